//! Attention's elementwise work in one GPU dispatch each: the heads from `mat_qkv`'s output
//! (`shaders/qkv_heads.wgsl`: biases, split, l2 norms, temperature) and the scores' softmax
//! (`shaders/softmax_rows.wgsl`). The `_plain` functions are the same with burn ops: the CPU
//! and training path, and what the kernels are tested against.

use burn::backend::Cube;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::wgsl::{self, Shader};
use crate::error::{Result, VarError};

/// The reference caps the learned temperature at 100 (`max_scale_mul = ln 100`); the shader
/// has the same constant.
pub const MAX_SCALE_MUL: f64 = 4.605_170_185_988_092;

/// `shaders/qkv_heads.wgsl`: one workgroup of 64 per (row, token, head).
struct QkvHeads;

impl Shader for QkvHeads {
    const SOURCE: &'static str = include_str!("../../shaders/qkv_heads.wgsl");
    const WIDTH: u32 = 64;
    const REDUCES: bool = true;
}

/// `shaders/softmax_rows.wgsl`: one workgroup of 64 per row of scores.
struct SoftmaxRows;

impl Shader for SoftmaxRows {
    const SOURCE: &'static str = include_str!("../../shaders/softmax_rows.wgsl");
    const WIDTH: u32 = 64;
    const REDUCES: bool = true;
}

/// What the attention's inputs are made of besides `mat_qkv`'s output.
#[derive(Clone, Debug)]
pub struct QkvParams {
    /// `[C]` each; keys have no bias.
    pub q_bias: Tensor<1>,
    pub v_bias: Tensor<1>,
    /// Per-head log temperature, `[1, H, 1, 1]`.
    pub scale_mul: Tensor<4>,
    pub heads: usize,
    /// The reference's `attn_l2_norm`: q and k l2-normalised, q times its temperature.
    pub l2_norm: bool,
}

/// `qkv` `[B, l, 3C]` (the product of `mat_qkv`, no bias) → `(q, k, v)` `[B, H, l, hd]`.
pub fn qkv_heads(qkv: Tensor<3>, p: &QkvParams) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    match qkv_heads_gpu(qkv.clone(), p) {
        Some(heads) => heads,
        None => qkv_heads_plain(qkv, p),
    }
}

/// `F.normalize(x, dim=-1)`: `x / max(‖x‖, 1e-12)`.
fn l2_normalize(x: Tensor<4>) -> Tensor<4> {
    // x·x, not powf(x, 2): the same value, without a pow call per element.
    let norm = (x.clone() * x.clone()).sum_dim(3).sqrt().clamp_min(1e-12);
    x / norm
}

/// The same with burn ops.
pub fn qkv_heads_plain(qkv: Tensor<3>, p: &QkvParams) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let [b, l, c3] = qkv.dims();
    let (c, h) = (c3 / 3, p.heads);
    let hd = c / h;
    let k_bias = p.q_bias.zeros_like();
    let bias = Tensor::cat(vec![p.q_bias.clone(), k_bias, p.v_bias.clone()], 0);
    let qkv = (qkv + bias.reshape([1, 1, 3 * c])).reshape([b, l, 3, h, hd]);
    let part = |i: usize| {
        qkv.clone()
            .narrow(2, i, 1)
            .reshape([b, l, h, hd])
            .swap_dims(1, 2)
    }; // [B, H, l, hd]
    let (q, k, v) = (part(0), part(1), part(2));
    if !p.l2_norm {
        return (q, k, v);
    }
    let temperature = p.scale_mul.clone().clamp_max(MAX_SCALE_MUL).exp(); // [1, H, 1, 1]
    (l2_normalize(q) * temperature, l2_normalize(k), v)
}

fn qkv_heads_gpu(qkv: Tensor<3>, p: &QkvParams) -> Option<(Tensor<4>, Tensor<4>, Tensor<4>)> {
    let [b, l, c3] = qkv.dims();
    let (c, h) = (c3 / 3, p.heads);
    if c3 % 3 != 0 || h == 0 || c % h != 0 || b * l * c3 >= u32::MAX as usize {
        return None;
    }
    let hd = c / h;
    let qkv = wgsl::cube(qkv)?;
    let q_bias = wgsl::cube(p.q_bias.clone())?;
    let v_bias = wgsl::cube(p.v_bias.clone())?;
    let scale_mul = wgsl::cube(p.scale_mul.clone())?;
    let shape = [b, h, l, hd];
    let (q, k, v) = (
        wgsl::empty_f32(&qkv, &shape),
        wgsl::empty_f32(&qkv, &shape),
        wgsl::empty_f32(&qkv, &shape),
    );
    let groups = b * l * h;
    wgsl::launch::<QkvHeads>(
        wgsl::groups_2d(groups),
        &[&qkv, &q_bias, &v_bias, &scale_mul, &q, &k, &v],
        vec![
            l as u64 | (h as u64) << 32,
            hd as u64 | (p.l2_norm as u64) << 32,
            groups as u64,
            0,
        ],
    );
    let t = |x| Tensor::<4>::from_primitive::<Cube>(x);
    Some((t(q), t(k), t(v)))
}

/// `softmax(scale·scores + bias)` over the last axis of `scores` `[B, H, l, L]`: on a GPU one
/// dispatch when there is no bias (inference, where the KV cache makes the mask
/// unnecessary), else burn's ops.
pub fn attention_softmax(scores: Tensor<4>, scale: f32, bias: Option<&Tensor<4>>) -> Tensor<4> {
    if bias.is_none()
        && let Some(y) = softmax_gpu(scores.clone(), scale)
    {
        return y;
    }
    attention_softmax_plain(scores, scale, bias)
}

/// The same with burn ops.
pub fn attention_softmax_plain(
    scores: Tensor<4>,
    scale: f32,
    bias: Option<&Tensor<4>>,
) -> Tensor<4> {
    // A product by 1 (the l2-normalised attention's scale) is exact: not dispatched.
    let mut scores = if scale == 1.0 { scores } else { scores * scale };
    if let Some(bias) = bias {
        scores = scores + bias.clone();
    }
    softmax(scores, 3)
}

fn softmax_gpu(scores: Tensor<4>, scale: f32) -> Option<Tensor<4>> {
    let dims = scores.dims();
    let len = dims[3];
    let rows = dims[0] * dims[1] * dims[2];
    if rows * len >= u32::MAX as usize || len == 0 {
        return None;
    }
    let s = wgsl::cube(scores)?;
    let y = wgsl::empty_f32(&s, &dims);
    wgsl::launch::<SoftmaxRows>(
        wgsl::groups_2d(rows),
        &[&s, &y],
        vec![rows as u64 | (len as u64) << 32, scale.to_bits() as u64],
    );
    Some(Tensor::from_primitive::<Cube>(y))
}

/// Shapes the native and browser tests check `(B, l, C, H)`: the shipped model (C 128, 4
/// heads of 32) at scales 0 and 5 with CFG, d16 (16 heads of 64) at its last scale, heads
/// wider than a workgroup (96), and an odd head width.
pub const ATTENTION_TEST_SHAPES: [(usize, usize, usize, usize); 5] = [
    (2, 1, 128, 4),
    (2, 64, 128, 4),
    (2, 256, 1024, 16),
    (1, 5, 192, 2),
    (3, 7, 60, 4),
];

/// Both kernels on `device` against the plain ops on the CPU, for random inputs from
/// `seed` at `(B, l, C, H)`, with and without l2 norms (a temperature above the cap
/// included): the largest of q, k, v and softmax differences, each relative to the largest
/// reference value. Softmax rows are `L = 2l + 3` long (more than cached so far, as at
/// inference).
pub async fn attention_kernels_error(
    device: &Device,
    (b, l, c, h): (usize, usize, usize, usize),
    seed: u64,
) -> Result<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut draw = |len: usize, spread: f64| -> Vec<f32> {
        (0..len)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * spread) as f32)
            .collect()
    };
    let qkv = draw(b * l * 3 * c, 2.0);
    let (q_bias, v_bias) = (draw(c, 0.5), draw(c, 0.5));
    let mut scale_mul = draw(h, 2.0);
    scale_mul[0] = 6.0; // above ln 100: capped
    let len = 2 * l + 3;
    let scores = draw(b * h * l * len, 8.0);
    let cpu = Device::flex();
    let gpu_error = || VarError::Device("the attention kernels need a wgpu/WebGPU device".into());
    let mut worst = 0f32;
    for l2_norm in [true, false] {
        let params = |dev: &Device| QkvParams {
            q_bias: Tensor::from_data(TensorData::new(q_bias.clone(), [c]), dev),
            v_bias: Tensor::from_data(TensorData::new(v_bias.clone(), [c]), dev),
            scale_mul: Tensor::from_data(TensorData::new(scale_mul.clone(), [1, h, 1, 1]), dev),
            heads: h,
            l2_norm,
        };
        let input =
            |dev: &Device| Tensor::<3>::from_data(TensorData::new(qkv.clone(), [b, l, 3 * c]), dev);
        let (gq, gk, gv) = qkv_heads_gpu(input(device), &params(device)).ok_or_else(gpu_error)?;
        let (cq, ck, cv) = qkv_heads_plain(input(&cpu), &params(&cpu));
        for (got, want) in [(gq, cq), (gk, ck), (gv, cv)] {
            let got = crate::readback::read_f32(got).await?;
            let want = crate::readback::read_f32(want).await?;
            worst = worst.max(super::relative_error(&got, &want));
        }
    }
    for scale in [1.0, 0.125] {
        let input = |dev: &Device| {
            Tensor::<4>::from_data(TensorData::new(scores.clone(), [b, h, l, len]), dev)
        };
        let got = softmax_gpu(input(device), scale).ok_or_else(gpu_error)?;
        let got = crate::readback::read_f32(got).await?;
        let want =
            crate::readback::read_f32(attention_softmax_plain(input(&cpu), scale, None)).await?;
        worst = worst.max(super::relative_error(&got, &want));
    }
    Ok(worst)
}
