//! AdaLN's LayerNorm and modulation in one GPU dispatch (`shaders/modulated_layer_norm.wgsl`):
//! `ln(x)·(1 + m[:, scale]) + m[:, shift]`, the first thing every transformer block does twice
//! per scale and the head once. burn's ops issue ten dispatches for it (`var bench --backend
//! wgpu` counts them); this is one, reading the modulation `[B, K, C]` in place.
//!
//! [`modulated_layer_norm_plain`] is the same with burn ops: the CPU path, the training path
//! (autodiff tensors are not `Cube` tensors) and what the kernel is tested against.

use burn::tensor::{Device, Tensor, TensorData};

use super::wgsl::{self, MAX_GROUPS_PER_DIM, Shader};
use crate::error::Result;

/// `shaders/modulated_layer_norm.wgsl`: one workgroup of 64 per row.
struct ModulatedLayerNorm;

impl Shader for ModulatedLayerNorm {
    const SOURCE: &'static str = include_str!("../../shaders/modulated_layer_norm.wgsl");
    const WIDTH: u32 = 64;
    const REDUCES: bool = true;
}

/// `shaders/gated_residual.wgsl`: one invocation per element.
struct GatedResidual;

impl Shader for GatedResidual {
    const SOURCE: &'static str = include_str!("../../shaders/gated_residual.wgsl");
    const WIDTH: u32 = 256;
}

/// LayerNorm over the last axis without affine parameters (eps 1e-6), as the reference's
/// `nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)`.
pub fn layer_norm(x: Tensor<3>) -> Tensor<3> {
    let (var, mean) = x.clone().var_mean_bias(2);
    (x - mean) / (var + 1e-6).sqrt()
}

/// `ln(x)·(1 + m[:, scale]) + m[:, shift]` for `x` `[B, l, C]` and `m` `[B, 1, K, C]`: on a
/// GPU one dispatch, elsewhere burn's ops.
pub fn modulated_layer_norm(x: Tensor<3>, m: &Tensor<4>, scale: usize, shift: usize) -> Tensor<3> {
    match modulated_layer_norm_gpu(x.clone(), m, scale, shift) {
        Some(y) => y,
        None => modulated_layer_norm_plain(x, m, scale, shift),
    }
}

/// The same with burn ops (the reference for the kernel).
pub fn modulated_layer_norm_plain(
    x: Tensor<3>,
    m: &Tensor<4>,
    scale: usize,
    shift: usize,
) -> Tensor<3> {
    let [b, _, _, c] = m.dims();
    let chunk = |i: usize| m.clone().narrow(2, i, 1).reshape([b, 1, c]);
    layer_norm(x) * (chunk(scale) + 1.0) + chunk(shift)
}

/// The kernel, or `None` off the GPU (burn-flex, autodiff) or past its row limit.
fn modulated_layer_norm_gpu(
    x: Tensor<3>,
    m: &Tensor<4>,
    scale: usize,
    shift: usize,
) -> Option<Tensor<3>> {
    let [b, l, c] = x.dims();
    let [mb, one, k, mc] = m.dims();
    debug_assert_eq!((mb, one, mc), (b, 1, c), "modulation of another shape");
    if b * l > MAX_GROUPS_PER_DIM || scale >= k || shift >= k || k > 0xffff {
        return None;
    }
    let x = wgsl::cube(x)?;
    let m = wgsl::cube(m.clone())?;
    let y = wgsl::empty_f32(&x, &[b, l, c]);
    let scale_shift = scale as u64 | (shift as u64) << 16;
    wgsl::launch::<ModulatedLayerNorm>(
        burn::cubecl::CubeCount::Static((b * l) as u32, 1, 1),
        &[&x, &m, &y],
        vec![c as u64 | (l as u64) << 32, k as u64 | scale_shift << 32],
    );
    Some(Tensor::from_primitive::<burn::backend::Cube>(y))
}

/// `x + (h + bias)·m[:, gate]` for `x`, `h` `[B, l, C]`, `bias` `[C]` (the output
/// projection's, when it is left to this step) and `m` `[B, 1, K, C]`: the gated residual
/// after a block's attention and its MLP. On a GPU one dispatch, elsewhere burn's ops (the
/// bias, a copy of the chunk, a product and a sum).
pub fn gated_residual(
    x: Tensor<3>,
    h: Tensor<3>,
    bias: Option<&Tensor<1>>,
    m: &Tensor<4>,
    gate: usize,
) -> Tensor<3> {
    match gated_residual_gpu(x.clone(), h.clone(), bias, m, gate) {
        Some(y) => y,
        None => gated_residual_plain(x, h, bias, m, gate),
    }
}

/// The same with burn ops (the reference for the kernel).
pub fn gated_residual_plain(
    x: Tensor<3>,
    h: Tensor<3>,
    bias: Option<&Tensor<1>>,
    m: &Tensor<4>,
    gate: usize,
) -> Tensor<3> {
    let [b, _, _, c] = m.dims();
    let h = match bias {
        Some(bias) => h + bias.clone().unsqueeze(),
        None => h,
    };
    x + h * m.clone().narrow(2, gate, 1).reshape([b, 1, c])
}

fn gated_residual_gpu(
    x: Tensor<3>,
    h: Tensor<3>,
    bias: Option<&Tensor<1>>,
    m: &Tensor<4>,
    gate: usize,
) -> Option<Tensor<3>> {
    let [b, l, c] = x.dims();
    let k = m.dims()[2];
    if gate >= k
        || h.dims() != [b, l, c]
        || b * l * c >= u32::MAX as usize
        || bias.is_some_and(|bias| bias.dims()[0] != c)
    {
        return None;
    }
    let (x, h, m) = (wgsl::cube(x)?, wgsl::cube(h)?, wgsl::cube(m.clone())?);
    let (bias, n_bias) = wgsl::optional(&x, bias)?;
    let y = wgsl::empty_f32(&x, &[b, l, c]);
    let n = b * l * c;
    wgsl::launch::<GatedResidual>(
        wgsl::groups_2d(n.div_ceil(GatedResidual::WIDTH as usize)),
        &[&x, &h, &bias, &m, &y],
        vec![
            n as u64 | (c as u64) << 32,
            (l * c) as u64 | ((k as u64) << 16 | gate as u64) << 32,
            (n_bias > 0) as u64,
            0,
        ],
    );
    Some(Tensor::from_primitive::<burn::backend::Cube>(y))
}

/// Shapes the native and browser tests check `(B, l, C, K)`: the shipped model's width (128)
/// at scales 0 and 5 with CFG, d16's (1024) at its last scale, widths that are not a multiple
/// of the workgroup, a single row, and the head's two chunks.
pub const MODULATED_LN_TEST_SHAPES: [(usize, usize, usize, usize); 6] = [
    (2, 1, 128, 6),
    (2, 64, 128, 6),
    (2, 256, 1024, 6),
    (3, 7, 100, 6),
    (1, 1, 37, 2),
    (4, 9, 1536, 2),
];

/// The kernel on `device` against [`modulated_layer_norm_plain`] on the CPU for random x
/// (offset from zero, so the mean matters) and modulation from `seed`: the largest difference
/// relative to the largest reference value, for each (scale, shift) pair the model uses.
pub async fn modulated_layer_norm_error(
    device: &Device,
    (b, l, c, k): (usize, usize, usize, usize),
    seed: u64,
) -> Result<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut draw = |len: usize, offset: f64, spread: f64| -> Vec<f32> {
        (0..len)
            .map(|_| (offset + (rng.uniform() * 2.0 - 1.0) * spread) as f32)
            .collect()
    };
    let x = draw(b * l * c, 3.0, 2.0);
    let m = draw(b * k * c, 0.0, 0.5);
    let cpu = Device::flex();
    let mut worst = 0f32;
    for (scale, shift) in [(k - 2, k - 1), (2.min(k - 1), 0)] {
        let run = |dev: &Device| {
            let x = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, l, c]), dev);
            let m = Tensor::<4>::from_data(TensorData::new(m.clone(), [b, 1, k, c]), dev);
            (x, m)
        };
        let (gx, gm) = run(device);
        let got = modulated_layer_norm_gpu(gx, &gm, scale, shift).ok_or_else(|| {
            crate::error::VarError::Device("the AdaLN kernel needs a wgpu/WebGPU device".into())
        })?;
        let got = crate::readback::read_f32(got).await?;
        let (cx, cm) = run(&cpu);
        let want = modulated_layer_norm_plain(cx, &cm, scale, shift);
        let want = crate::readback::read_f32(want).await?;
        worst = worst.max(super::relative_error(&got, &want));
    }
    Ok(worst)
}

/// The gated residual kernel on `device` against [`gated_residual_plain`] on the CPU, for
/// random x, h, bias and modulation from `seed`, at every gate index with and without the
/// bias: the largest difference
/// relative to the largest reference value.
pub async fn gated_residual_error(
    device: &Device,
    (b, l, c, k): (usize, usize, usize, usize),
    seed: u64,
) -> Result<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut draw = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect()
    };
    let (x, h, m, bias) = (draw(b * l * c), draw(b * l * c), draw(b * k * c), draw(c));
    let cpu = Device::flex();
    let mut worst = 0f32;
    for (gate, with_bias) in (0..k).flat_map(|g| [(g, false), (g, true)]) {
        let bias_on = |dev: &Device| {
            with_bias.then(|| Tensor::<1>::from_data(TensorData::new(bias.clone(), [c]), dev))
        };
        let run = |dev: &Device| {
            let t3 =
                |v: &Vec<f32>| Tensor::<3>::from_data(TensorData::new(v.clone(), [b, l, c]), dev);
            let m = Tensor::<4>::from_data(TensorData::new(m.clone(), [b, 1, k, c]), dev);
            (t3(&x), t3(&h), m)
        };
        let (gx, gh, gm) = run(device);
        let got =
            gated_residual_gpu(gx, gh, bias_on(device).as_ref(), &gm, gate).ok_or_else(|| {
                crate::error::VarError::Device(
                    "the residual kernel needs a wgpu/WebGPU device".into(),
                )
            })?;
        let got = crate::readback::read_f32(got).await?;
        let (cx, ch, cm) = run(&cpu);
        let want = gated_residual_plain(cx, ch, bias_on(&cpu).as_ref(), &cm, gate);
        let want = crate::readback::read_f32(want).await?;
        worst = worst.max(super::relative_error(&got, &want));
    }
    Ok(worst)
}
