//! The MLP's activation in one GPU dispatch (`shaders/gelu_tanh.wgsl`), where burn's ops
//! take nine. [`gelu_tanh_plain`] is the same with burn ops: the CPU and training path, and
//! what the kernel is tested against.

use burn::backend::Cube;
use burn::tensor::{Device, Tensor, TensorData};

use super::wgsl::{self, Shader};
use crate::error::Result;

/// `shaders/gelu_tanh.wgsl`: one invocation per element.
struct GeluTanh;

impl Shader for GeluTanh {
    const SOURCE: &'static str = include_str!("../../shaders/gelu_tanh.wgsl");
    const WIDTH: u32 = 256;
}

/// `GELU(approximate='tanh')` of `x + bias` (the bias over the last axis, when given):
/// `0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³)))`; on a GPU one dispatch, elsewhere burn's ops.
pub fn gelu_tanh(x: Tensor<3>, bias: Option<&Tensor<1>>) -> Tensor<3> {
    match gelu_tanh_gpu(x.clone(), bias) {
        Some(y) => y,
        None => match bias {
            Some(b) => gelu_tanh_plain(x + b.clone().unsqueeze()),
            None => gelu_tanh_plain(x),
        },
    }
}

/// The same with burn ops. burn's `gelu_approximate` computes it with `powf(x, 3)`, a pow
/// call per element (5% of a VAR-d16 image on the CPU); `x·x·x` is the same cube to an ulp
/// or two.
pub fn gelu_tanh_plain(x: Tensor<3>) -> Tensor<3> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * SQRT_2_OVER_PI;
    x * (inner.tanh() + 1.0) * 0.5
}

fn gelu_tanh_gpu(x: Tensor<3>, bias: Option<&Tensor<1>>) -> Option<Tensor<3>> {
    let dims = x.dims();
    let n: usize = dims.iter().product();
    if n >= u32::MAX as usize || bias.is_some_and(|b| b.dims()[0] != dims[2]) {
        return None;
    }
    let x = wgsl::cube(x)?;
    let (bias, n_bias) = wgsl::optional(&x, bias)?;
    let y = wgsl::empty_f32(&x, &dims);
    wgsl::launch::<GeluTanh>(
        wgsl::groups_2d(n.div_ceil(GeluTanh::WIDTH as usize)),
        &[&x, &bias, &y],
        vec![n as u64 | (n_bias.max(1) as u64) << 32, (n_bias > 0) as u64],
    );
    Some(Tensor::from_primitive::<Cube>(y))
}

/// The kernel on `device` against the plain ops on the CPU for `n` values from −12 to 12
/// (both tails and every value between at 24/n spacing) and the exact edges, without a bias,
/// then as `[2, 3, 4]` rows of them with a bias of 4: the largest difference relative to the
/// largest reference value.
pub async fn gelu_tanh_error(device: &Device, n: usize) -> Result<f32> {
    let mut values: Vec<f32> = (0..n)
        .map(|i| -12.0 + 24.0 * i as f32 / (n - 1) as f32)
        .collect();
    values.extend([0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0, 1e4, -1e4]);
    let rows = values.len() / 4;
    let bias = [0.5f32, -1.0, 0.0, 3.0];
    let mut worst = 0f32;
    for (shape, with_bias) in [([1, 1, values.len()], false), ([2, rows / 2, 4], true)] {
        let numel: usize = shape.iter().product();
        let input = |dev: &Device| {
            let x = Tensor::<3>::from_data(TensorData::new(values[..numel].to_vec(), shape), dev);
            let b = Tensor::<1>::from_data(TensorData::new(bias.to_vec(), [4]), dev);
            (x, with_bias.then_some(b))
        };
        let (x, b) = input(device);
        let got = gelu_tanh_gpu(x, b.as_ref()).ok_or_else(|| {
            crate::error::VarError::Device("the GELU kernel needs a wgpu/WebGPU device".into())
        })?;
        let got = crate::readback::read_f32(got).await?;
        let (x, b) = input(&Device::flex());
        let plain = match b {
            Some(b) => gelu_tanh_plain(x + b.unsqueeze()),
            None => gelu_tanh_plain(x),
        };
        let want = crate::readback::read_f32(plain).await?;
        if let Some(i) = got.iter().position(|v| !v.is_finite()) {
            return Err(crate::error::VarError::Device(format!(
                "GELU({}) gave {} on the GPU",
                values[i], got[i]
            )));
        }
        worst = worst.max(super::relative_error(&got, &want));
    }
    Ok(worst)
}
