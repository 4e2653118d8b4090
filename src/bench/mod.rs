//! The generation benchmark, shared by `var bench` (native: burn-flex or wgpu) and the bench
//! page (`www/bench.html`, WebGPU): one image per run with CFG, timed per scale and for the
//! final decode, with analytic FLOP counts, the achieved GFLOP/s, and on a GPU the device
//! memory the allocator holds, sampled after every scale.
//!
//! Time comes from a caller-supplied clock (`Instant` natively, `performance.now()` in the
//! browser), so this module has no platform code. Every scale ends by reading its logits back
//! to the CPU for sampling, which waits for the GPU: a scale's time is the GPU work it queued,
//! not just the time to queue it.
//!
//! On a GPU every timed image's kernel dispatches are counted too (`dispatches`: by scale, for
//! the decode and by kernel, from CubeCL's launch observer).
//!
//! The kernel micro-benchmark (`var bench --kernels`: each Linear layer's matmul timed alone)
//! is in `kernels`, re-exported here.

pub mod dispatches;
mod kernels;

use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::cubecl::MemoryScope;
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::config::SamplingParams;
use crate::config::{ModelConfig, VqvaeConfig};
use crate::error::Result;
use crate::generate::Generation;
use crate::model::Model;
use crate::readback::read_f32;

use self::dispatches::{Counting, DispatchCounts};
pub use self::kernels::{
    ConvTiming, MatmulTiming, conv_shapes, convolutions, matmul_shapes, matmuls,
};

/// FLOPs (2 per multiply-add) of scale `si` of one transformer forward with `rows` sequences
/// (2 per image under CFG): qkv, attention over every token so far, proj, MLP and the
/// vocabulary projection, plus at scale 0 the AdaLN projections of every block and the head
/// (once per image). Norms and activations are left out.
pub fn transformer_flops(config: &ModelConfig, si: usize, rows: usize) -> f64 {
    let v = &config.var;
    let d = v.embed_dim as f64;
    let l = (config.patch_nums[si] * config.patch_nums[si]) as f64;
    let context: usize = config.patch_nums[..=si].iter().map(|p| p * p).sum();
    let c = context as f64;
    let hidden = v.mlp_hidden() as f64;
    let vocab = config.vqvae.vocab_size as f64;
    let cvae = config.vqvae.z_channels as f64;
    let per_block = l * (d * 3.0 * d + 2.0 * c * d + d * d + 2.0 * d * hidden);
    let input = if si == 0 { 0.0 } else { l * cvae * d };
    // The AdaLN projections depend on the class alone: computed once per image, counted here.
    let adaln = if si == 0 {
        v.depth as f64 * d * 6.0 * d + d * 2.0 * d
    } else {
        0.0
    };
    let head = l * d * vocab;
    2.0 * rows as f64 * (v.depth as f64 * per_block + input + adaln + head)
}

/// One convolution of the VQ-VAE decode: kernel size, channels, and the side of its square
/// output (stride 1 and "same" padding throughout the decoder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DecoderConv {
    pub kernel: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub side: usize,
}

impl DecoderConv {
    pub fn flops(&self) -> f64 {
        let (k, side) = (self.kernel, self.side);
        2.0 * (k * k * self.c_in * self.c_out * side * side) as f64
    }
}

/// The VQ-VAE decode of one image, layer by layer as the decoder runs it: every convolution
/// (`post_quant_conv` first), and the FLOPs of the attention blocks' two products.
fn decoder_layers(cfg: &VqvaeConfig, image_size: usize) -> (Vec<DecoderConv>, f64) {
    let mut convs = Vec::new();
    let mut attention = 0.0;
    let mut conv = |kernel: usize, c_in: usize, c_out: usize, side: usize| {
        convs.push(DecoderConv {
            kernel,
            c_in,
            c_out,
            side,
        })
    };
    let res_block = |conv: &mut dyn FnMut(usize, usize, usize, usize), c_in, c_out, side| {
        conv(3, c_in, c_out, side);
        conv(3, c_out, c_out, side);
        if c_in != c_out {
            conv(1, c_in, c_out, side);
        }
    };
    let mut attn = |conv: &mut dyn FnMut(usize, usize, usize, usize), c: usize, side: usize| {
        let n = (side * side) as f64;
        conv(1, c, 3 * c, side);
        attention += 4.0 * n * n * c as f64;
        conv(1, c, c, side);
    };
    let levels = cfg.ch_mult.len();
    let mut side = image_size / cfg.downsample_factor();
    let mut c = cfg.ch * cfg.ch_mult[levels - 1];
    conv(3, cfg.z_channels, cfg.z_channels, side);
    conv(3, cfg.z_channels, c, side);
    res_block(&mut conv, c, c, side);
    if cfg.attn_in_mid {
        attn(&mut conv, c, side);
    }
    res_block(&mut conv, c, c, side);
    for i in (0..levels).rev() {
        let c_out = cfg.ch * cfg.ch_mult[i];
        for _ in 0..cfg.decoder_blocks_per_level() {
            res_block(&mut conv, c, c_out, side);
            c = c_out;
            if i == levels - 1 && cfg.attn_in_last_level {
                attn(&mut conv, c, side);
            }
        }
        if i > 0 {
            side *= 2;
            conv(3, c, c, side);
        }
    }
    conv(3, c, cfg.in_channels, side);
    (convs, attention)
}

/// Every convolution of one image's VQ-VAE decode, in the order they run.
pub fn decoder_convs(cfg: &VqvaeConfig, image_size: usize) -> Vec<DecoderConv> {
    decoder_layers(cfg, image_size).0
}

/// FLOPs of the VQ-VAE decode of one image (`post_quant_conv` and the decoder's convolutions
/// and attention), following the decoder's structure level by level.
pub fn decoder_flops(cfg: &VqvaeConfig, image_size: usize) -> f64 {
    let (convs, attention) = decoder_layers(cfg, image_size);
    convs.iter().map(DecoderConv::flops).sum::<f64>() + attention
}

/// What one benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchSettings {
    /// Timed runs after one untimed warm-up run (shader compilation, autotuning, first
    /// allocations); medians are reported.
    pub runs: usize,
    pub params: SamplingParams,
    /// Time the final VQ-VAE decode too.
    pub decode: bool,
}

impl BenchSettings {
    /// The reference's FID sampling (CFG 1.5 so both halves run, top-p 0.96) at `top_k`: what
    /// `var bench` and the bench page measure.
    pub fn reference(runs: usize, top_k: usize, decode: bool) -> Self {
        Self {
            runs,
            params: SamplingParams {
                cfg: 1.5,
                top_k,
                top_p: 0.96,
                ..SamplingParams::default()
            },
            decode,
        }
    }
}

/// One scale's median time.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleTiming {
    pub si: usize,
    pub patch: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub gflop: f64,
    pub gflops: f64,
}

/// The device memory burn's allocator holds on a GPU (every stream, every pool).
#[derive(Clone, Debug, Serialize)]
pub struct GpuMemory {
    /// Bytes reserved from the device once the warm-up image is done, in MiB.
    pub reserved_mib_after_warmup: f64,
    /// Bytes of live tensors then (the weights, mostly), in MiB: reserved memory comes in
    /// pages, so this is what tells precisions apart.
    pub in_use_mib_after_warmup: f64,
    /// The most reserved at any scale of the timed runs, in MiB.
    pub reserved_mib_peak: f64,
    /// Device allocations (pages) held after the warm-up image.
    pub pages_after_warmup: u64,
    /// Device allocations made during the timed runs: the sum of every increase in a pool's
    /// page count from one scale to the next. 0 means the KV caches and workspaces of later
    /// images live in memory the first image already allocated.
    pub pages_allocated_in_timed_runs: u64,
    /// Where those allocations happened: "run R, scale S: <pool>: a -> b pages".
    pub allocations: Vec<String>,
}

/// The medians of one benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub backend: String,
    pub storage: String,
    pub runs: usize,
    pub scales: Vec<ScaleTiming>,
    pub transformer_seconds: f64,
    pub transformer_gflop: f64,
    pub transformer_gflops: f64,
    pub decode_seconds: Option<f64>,
    pub decode_gflop: f64,
    pub decode_gflops: Option<f64>,
    /// Median of whole runs (every scale, plus the decode when timed).
    pub total_seconds: f64,
    pub gpu_memory: Option<GpuMemory>,
    /// On a GPU: the kernel dispatches of the last timed image.
    pub dispatches: Option<DispatchCounts>,
    /// On a GPU: each timed image's dispatch total, in order (equal when the work per image
    /// is fixed, which a test checks).
    pub dispatches_per_timed_image: Vec<u64>,
}

/// A one-element tensor on `device` if it is a GPU, made once per benchmark: its client reads
/// burn's allocator report. (Made per sample, its fill would be one more dispatch counted in
/// every scale.)
fn gpu_probe(device: &Device) -> Option<CubeTensor> {
    Tensor::<1>::zeros([1], device)
        .try_into_primitive::<Cube>()
        .ok()
}

/// One look at the allocator: device pages per pool (named by stream and role) and the
/// bytes reserved in all.
struct MemorySample {
    pages: Vec<(String, u64)>,
    reserved: u64,
    in_use: u64,
}

impl MemorySample {
    fn take(probe: Option<&CubeTensor>) -> Option<Self> {
        let report = probe?.client.memory_report(MemoryScope::Device);
        let mut pages = Vec::new();
        for stream in &report.streams {
            let id = stream.stream.value;
            let mut add = |role: String, pools: &burn::cubecl::MemoryPoolsReport| {
                for (i, pool) in pools.dynamic.iter().enumerate() {
                    pages.push((format!("stream {id} {role}dynamic pool {i}"), pool.pages));
                }
                pages.push((
                    format!("stream {id} {role}persistent pool"),
                    pools.persistent.pages,
                ));
                pages.push((
                    format!("stream {id} {role}dedicated pool"),
                    pools.dedicated.pages,
                ));
            };
            add(String::new(), &stream.pools);
            for aux in &stream.auxiliary {
                add(format!("{} ", aux.name), &aux.pools);
            }
        }
        let usage = report.usage();
        Some(Self {
            pages,
            reserved: usage.bytes_reserved,
            in_use: usage.bytes_in_use,
        })
    }

    fn total_pages(&self) -> u64 {
        self.pages.iter().map(|(_, n)| n).sum()
    }

    /// Pools that hold more pages than in `before`, as sentences.
    fn growth_since(&self, before: &MemorySample) -> Vec<(u64, String)> {
        self.pages
            .iter()
            .filter_map(|(name, n)| {
                let old = before
                    .pages
                    .iter()
                    .find(|(b, _)| b == name)
                    .map_or(0, |(_, o)| *o);
                (*n > old).then(|| (n - old, format!("{name}: {old} -> {n} pages")))
            })
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs one warm-up image and `settings.runs` timed ones of class 0, `now()` giving seconds;
/// `on_run(i)` is told before run `i` starts (0 is the warm-up), for progress display.
pub async fn run(
    model: &Model,
    settings: &BenchSettings,
    backend: &str,
    now: &dyn Fn() -> f64,
    mut on_run: impl FnMut(usize),
) -> Result<BenchReport> {
    let config = &model.config;
    let device = model.device();
    let k = config.num_scales();
    let runs = settings.runs.max(1);
    let mut per_scale: Vec<Vec<f64>> = vec![Vec::new(); k];
    let (mut transformer, mut decodes, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    // The allocator after the warm-up image (pages, bytes reserved), and the latest sample.
    let mut warmup_memory = None;
    let mut after_warmup: Option<MemorySample> = None;
    let (mut peak_reserved, mut new_pages, mut allocations) = (0u64, 0u64, Vec::new());
    let probe = gpu_probe(&device);
    let on_gpu = probe.is_some();
    let (mut dispatches, mut dispatches_per_timed_image) = (None, Vec::new());
    for round in 0..=runs {
        on_run(round);
        // Not the warm-up: it compiles, autotunes (launching candidates) and allocates.
        let counting = (on_gpu && round > 0).then(Counting::start);
        let start = now();
        let mut generation = Generation::new(model, &[0], &settings.params, None).await?;
        let mut last = now();
        let mut times = Vec::with_capacity(k);
        loop {
            if let Some(counting) = &counting {
                counting.enter(times.len());
            }
            let Some(step) = generation.step().await? else {
                break;
            };
            let t = now();
            times.push(t - last);
            last = t;
            if let Some(previous) = after_warmup.as_mut()
                && let Some(sample) = MemorySample::take(probe.as_ref())
            {
                for (pages, what) in sample.growth_since(previous) {
                    new_pages += pages;
                    allocations.push(format!("run {round}, scale {}: {what}", step.si));
                }
                peak_reserved = peak_reserved.max(sample.reserved);
                *previous = sample;
            }
        }
        let transformer_end = now();
        if settings.decode {
            read_f32(generation.image()).await?;
        }
        let end = now();
        if let Some(counting) = counting {
            let counts = counting.finish(k);
            dispatches_per_timed_image.push(counts.per_image);
            dispatches = Some(counts);
        }
        if round == 0 {
            after_warmup = MemorySample::take(probe.as_ref());
            warmup_memory = after_warmup
                .as_ref()
                .map(|m| (m.total_pages(), m.reserved, m.in_use));
            continue;
        }
        for (si, t) in times.into_iter().enumerate() {
            per_scale[si].push(t);
        }
        transformer.push(transformer_end - start);
        decodes.push(end - transformer_end);
        totals.push(end - start);
    }
    let scales: Vec<ScaleTiming> = per_scale
        .into_iter()
        .enumerate()
        .map(|(si, times)| {
            let seconds = median(times);
            let gflop = transformer_flops(config, si, 2) / 1e9;
            ScaleTiming {
                si,
                patch: config.patch_nums[si],
                tokens: config.patch_nums[si].pow(2),
                seconds,
                gflop,
                gflops: gflop / seconds,
            }
        })
        .collect();
    let transformer_gflop: f64 = scales.iter().map(|s| s.gflop).sum();
    let transformer_seconds = median(transformer);
    let decode_gflop = decoder_flops(&config.vqvae, config.image_size) / 1e9;
    let decode_seconds = settings.decode.then(|| median(decodes));
    Ok(BenchReport {
        model: config.name.clone(),
        backend: backend.to_string(),
        storage: format!("{:?}", config.storage).to_lowercase(),
        runs,
        scales,
        transformer_seconds,
        transformer_gflop,
        transformer_gflops: transformer_gflop / transformer_seconds,
        decode_seconds,
        decode_gflop,
        decode_gflops: decode_seconds.map(|s| decode_gflop / s),
        total_seconds: median(totals),
        gpu_memory: warmup_memory.map(|(pages, reserved, in_use)| GpuMemory {
            reserved_mib_after_warmup: reserved as f64 / MIB,
            in_use_mib_after_warmup: in_use as f64 / MIB,
            reserved_mib_peak: peak_reserved.max(reserved) as f64 / MIB,
            pages_after_warmup: pages,
            pages_allocated_in_timed_runs: new_pages,
            allocations,
        }),
        dispatches,
        dispatches_per_timed_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_costs_two_flops_per_weight() {
        // At the first scale (one token, nothing to attend to but itself) a forward touches
        // every matrix once: 2 FLOPs per weight, and the paper gives VAR-d16 310M parameters
        // (its embeddings, biases and norms, under 1%, do no matmul work).
        let config = ModelConfig::official(16);
        let weights = transformer_flops(&config, 0, 1) / 2.0;
        assert!((0.97 * 310e6..=310e6).contains(&weights), "{weights}");
        // Two rows (CFG) cost twice one row.
        assert_eq!(
            transformer_flops(&config, 5, 2),
            2.0 * transformer_flops(&config, 5, 1)
        );
    }

    #[test]
    fn the_3x3_convolutions_are_nearly_all_of_the_decode() {
        // What Winograd is for (ARCHITECTURE.md): of d16's 256 px decode, the 3x3 "same"
        // convolutions carry over 90% of the FLOPs; the distinct shapes and their counts
        // cover every convolution the decoder runs.
        let config = ModelConfig::official(16);
        let convs = decoder_convs(&config.vqvae, config.image_size);
        let shapes = conv_shapes(&config);
        assert_eq!(shapes.iter().map(|(_, n)| n).sum::<usize>(), convs.len());
        let total = decoder_flops(&config.vqvae, config.image_size);
        let three: f64 = convs
            .iter()
            .filter(|c| c.kernel == 3)
            .map(DecoderConv::flops)
            .sum();
        assert!(three / total > 0.9, "{three} of {total}");
    }

    #[test]
    fn the_256px_decode_is_about_0_39_tflop() {
        // The figure the issue tracker quotes for the official VQ-VAE at 256 px.
        let config = ModelConfig::official(16);
        let f = decoder_flops(&config.vqvae, config.image_size);
        assert!((0.35e12..0.45e12).contains(&f), "{f}");
    }
}
