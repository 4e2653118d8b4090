//! The kernel micro-benchmark: every Linear layer of the transformer at every scale, its matmul
//! timed alone as f32 and as int8 (and, on the CPU, through the packed CPU kernels), to see
//! which kernel a scale's time goes to; and every convolution of the VQ-VAE decode through
//! the CPU kernels, direct (im2col) against the fastest algorithm for its shape (Winograd for
//! the 3x3 ones).

use burn::tensor::{Device, Tensor};
use serde::Serialize;

use super::{DecoderConv, decoder_convs, median};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::readback::read_f32;

/// One Linear layer's matmul at one scale, timed as f32 (burn's matmul on the dequantized
/// weights) and as int8 (our kernel; on the CPU, burn's matmul after dequantizing), medians
/// in milliseconds. On the CPU the same product also runs through our packed CPU kernels
/// ([`crate::kernels::cpu`]), f32 and int8.
#[derive(Clone, Debug, Serialize)]
pub struct MatmulTiming {
    /// Which layer (`qkv`, `proj`, `fc1`, `fc2`, `head`, `ada_lin`, `head_ada`).
    pub layer: &'static str,
    pub si: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// How many times one image runs it (the blocks' layers once per block).
    pub per_image: usize,
    pub f32_ms: f64,
    pub int8_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_f32_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_int8_ms: Option<f64>,
}

/// The transformer's Linear layers at every scale, as (layer, scale, M, K, N, runs per
/// image), with M = 2 rows per token (CFG). The AdaLN projections run once per image on the
/// class condition (M = 2) and are listed at scale 0 (`head_ada`: the head's).
pub fn matmul_shapes(
    config: &ModelConfig,
) -> Vec<(&'static str, usize, usize, usize, usize, usize)> {
    let v = &config.var;
    let (c, hidden, vocab, depth) = (
        v.embed_dim,
        v.mlp_hidden(),
        config.vqvae.vocab_size,
        v.depth,
    );
    let mut shapes = vec![
        ("ada_lin", 0, 2, c, 6 * c, depth),
        ("head_ada", 0, 2, c, 2 * c, 1),
    ];
    for (si, &pn) in config.patch_nums.iter().enumerate() {
        let m = 2 * pn * pn;
        shapes.extend([
            ("qkv", si, m, c, 3 * c, depth),
            ("proj", si, m, c, c, depth),
            ("fc1", si, m, c, hidden, depth),
            ("fc2", si, m, hidden, c, depth),
            ("head", si, m, c, vocab, 1),
        ]);
    }
    shapes
}

/// Times every shape of [`matmul_shapes`] on `device`: random inputs and int8 codes, one
/// warm-up each (shader compilation, autotuning), then the median of `runs`, each of which
/// queues a few products and reads one value back (which waits for the device).
pub async fn matmuls(
    config: &ModelConfig,
    device: &Device,
    runs: usize,
    now: &dyn Fn() -> f64,
    mut on_shape: impl FnMut(usize, usize),
) -> Result<Vec<MatmulTiming>> {
    use crate::kernels::cpu::CpuLinear;
    use crate::kernels::int8::Int8Linear;
    use burn::tensor::{Distribution, TensorData};
    let shapes = matmul_shapes(config);
    let mut out = Vec::with_capacity(shapes.len());
    for (i, &(layer, si, m, k, n, per_image)) in shapes.iter().enumerate() {
        on_shape(i, shapes.len());
        let mut rng = crate::rng::Rng::new(i as u64);
        let codes: Vec<i8> = (0..k * n)
            .map(|_| (rng.uniform() * 254.0 - 127.0).round() as i8)
            .collect();
        let scales = vec![0.01f32; n];
        let int8 = Int8Linear::new(&codes, scales, Some(vec![0.0; n]), k, n, device)?;
        let float = int8.weight_dequantized();
        let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
        let bias = Tensor::<1>::from_data(TensorData::new(vec![0f32; n], [n]), device);
        // Each timing queues REPEATS products and waits once, so the fixed cost of a
        // read-back (large on a CPU-emulated GPU) is spread over them.
        const REPEATS: usize = 4;
        let time = async |f: &dyn Fn() -> Tensor<2>| -> Result<f64> {
            let mut times = Vec::with_capacity(runs);
            for round in 0..=runs.max(1) {
                let start = now();
                let mut last = f();
                for _ in 1..REPEATS {
                    last = f();
                }
                read_f32(last.slice([0..1, 0..1])).await?;
                if round > 0 {
                    times.push((now() - start) * 1e3 / REPEATS as f64);
                }
            }
            Ok(median(times))
        };
        let f32_ms =
            time(&|| x.clone().matmul(float.clone()) + bias.clone().unsqueeze_dim(0)).await?;
        let int8_ms = time(&|| int8.forward(x.clone())).await?;
        let (cpu_f32_ms, cpu_int8_ms) =
            if CpuLinear::supported() && !device.is_autodiff() && !crate::kernels::is_gpu(device) {
                let input = read_f32(x.clone()).await?;
                let weight = read_f32(float.clone()).await?;
                let zeros = || Some(vec![0f32; n]);
                let packed_f32 = CpuLinear::from_f32(&weight, k, n, zeros());
                let packed_int8 = CpuLinear::from_int8(&codes, &vec![0.01; n], k, n, k, zeros());
                let time_cpu = |layer: &CpuLinear| {
                    let mut times = Vec::with_capacity(runs);
                    for round in 0..=runs.max(1) {
                        let start = now();
                        for _ in 0..REPEATS {
                            std::hint::black_box(layer.forward(&input, m));
                        }
                        if round > 0 {
                            times.push((now() - start) * 1e3 / REPEATS as f64);
                        }
                    }
                    median(times)
                };
                (Some(time_cpu(&packed_f32)), Some(time_cpu(&packed_int8)))
            } else {
                (None, None)
            };
        out.push(MatmulTiming {
            layer,
            si,
            m,
            k,
            n,
            per_image,
            f32_ms,
            int8_ms,
            cpu_f32_ms,
            cpu_int8_ms,
        });
    }
    Ok(out)
}

/// One distinct convolution shape of the decode through the CPU kernels, medians in
/// milliseconds: direct (im2col) and by [`crate::kernels::cpu::CpuConv::new`]'s choice.
#[derive(Clone, Debug, Serialize)]
pub struct ConvTiming {
    #[serde(flatten)]
    pub conv: DecoderConv,
    /// How many times one decode runs it.
    pub per_image: usize,
    /// The algorithm [`crate::kernels::cpu::CpuConv::new`] picks (`direct` or `winograd`).
    pub algorithm: &'static str,
    pub direct_ms: f64,
    pub chosen_ms: f64,
}

/// The distinct convolutions of one decode of `config`'s VQ-VAE, in order of first use, each
/// with how many times the decode runs it.
pub fn conv_shapes(config: &ModelConfig) -> Vec<(DecoderConv, usize)> {
    let mut shapes: Vec<(DecoderConv, usize)> = Vec::new();
    for conv in decoder_convs(&config.vqvae, config.image_size) {
        match shapes.iter_mut().find(|(seen, _)| *seen == conv) {
            Some((_, count)) => *count += 1,
            None => shapes.push((conv, 1)),
        }
    }
    shapes
}

/// Times each distinct convolution of one decode of `config`'s VQ-VAE (batch 1, random
/// weights and inputs) on the CPU kernels, direct and as chosen, median of `runs` after a
/// warm-up; `None` where this CPU has no kernels.
pub fn convolutions(
    config: &ModelConfig,
    runs: usize,
    now: &dyn Fn() -> f64,
    mut on_shape: impl FnMut(usize, usize),
) -> Option<Vec<ConvTiming>> {
    use crate::kernels::cpu::{CpuConv, CpuLinear};
    if !CpuLinear::supported() {
        return None;
    }
    let shapes = conv_shapes(config);
    let mut out = Vec::with_capacity(shapes.len());
    for (i, &(conv, per_image)) in shapes.iter().enumerate() {
        on_shape(i, shapes.len());
        let DecoderConv {
            kernel: k,
            c_in,
            c_out,
            side,
        } = conv;
        let mut rng = crate::rng::Rng::new(i as u64);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.uniform() - 0.5) as f32).collect() };
        let weight = random(c_out * c_in * k * k);
        let x = random(c_in * side * side);
        let bias = Some(random(c_out));
        let pad = [k / 2; 4];
        let direct = CpuConv::direct(&weight, c_in, c_out, k, 1, pad, bias.clone());
        let chosen = CpuConv::new(&weight, c_in, c_out, k, 1, pad, bias);
        let time = |layer: &CpuConv| {
            let mut times = Vec::with_capacity(runs);
            for round in 0..=runs.max(1) {
                let start = now();
                std::hint::black_box(layer.forward(&x, 1, side, side));
                if round > 0 {
                    times.push((now() - start) * 1e3);
                }
            }
            median(times)
        };
        out.push(ConvTiming {
            conv,
            per_image,
            algorithm: chosen.algorithm(),
            direct_ms: time(&direct),
            chosen_ms: time(&chosen),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::transformer_flops;

    #[test]
    fn the_timed_matmuls_are_the_transformer_s_linear_layers() {
        // Every FLOP of an image but attention's (two [l, c] x [c, d] products per block)
        // and the 32-channel input projection is in one of the timed Linear shapes.
        let config = ModelConfig::official(16);
        let v = &config.var;
        let d = v.embed_dim as f64;
        let timed: f64 = matmul_shapes(&config)
            .iter()
            .map(|&(_, _, m, k, n, per_image)| 2.0 * (m * k * n * per_image) as f64)
            .sum();
        let mut rest = 0.0;
        let mut context = 0;
        for (si, &pn) in config.patch_nums.iter().enumerate() {
            let l = (pn * pn) as f64;
            context += pn * pn;
            let attention = v.depth as f64 * l * 2.0 * context as f64 * d;
            let input = if si == 0 {
                0.0
            } else {
                l * config.vqvae.z_channels as f64 * d
            };
            rest += 2.0 * 2.0 * (attention + input);
        }
        let total: f64 = (0..config.num_scales())
            .map(|si| transformer_flops(&config, si, 2))
            .sum();
        assert!(
            (timed + rest - total).abs() < 1e-6 * total,
            "{timed} + {rest} vs {total}"
        );
    }
}
