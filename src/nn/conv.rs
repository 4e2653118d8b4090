//! The VQ-VAE's convolutions, with the storage decided at load: burn's `Conv2d` (training, the
//! GPU), or packed for our CPU kernels ([`CpuConv`], inference). One module type, like the
//! transformer's [`super::Dense`]; [`super::Loader::conv`] picks the variant.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, TensorData};

use super::host_f32;
use crate::kernels::cpu::{CpuConv, group_norm};

// burn's Conv2d is a few hundred bytes of tensor handles and burn has no `Module` for `Box`;
// a model holds a few dozen of these, built once.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Conv {
    /// burn's convolution: the only variant with parameters.
    Burn(Conv2d),
    /// The weight packed once for the CPU kernels.
    Cpu(CpuConvLayer),
}

/// [`Conv::Cpu`]'s layer (no burn parameters: the packing is for inference).
#[derive(Module, Debug)]
pub struct CpuConvLayer {
    #[module(skip)]
    layer: Arc<CpuConv>,
}

impl From<Conv2d> for Conv {
    fn from(conv2d: Conv2d) -> Self {
        Conv::Burn(conv2d)
    }
}

impl Conv {
    pub fn cpu(layer: CpuConv) -> Self {
        Conv::Cpu(CpuConvLayer {
            layer: Arc::new(layer),
        })
    }

    /// `[B, c_in, H, W]` → `[B, c_out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Conv::Burn(conv) => conv.forward(x),
            Conv::Cpu(CpuConvLayer { layer }) => {
                let [b, _, h, w] = x.dims();
                let device = x.device();
                layer_forward(layer, host_f32(x), b, h, w, &device)
            }
        }
    }

    /// `conv(silu(norm(x)))`, or `conv(norm(x))` without `silu`: the VQ-VAE's pattern. On
    /// the CPU kernels the norm and SiLU run in place on the convolution's own copy of the
    /// input ([`group_norm`]: three passes where burn's ops make a dozen); elsewhere they are
    /// burn's ops.
    pub fn forward_normed(&self, norm: &GroupNorm, apply_silu: bool, x: Tensor<4>) -> Tensor<4> {
        match self {
            Conv::Burn(_) => {
                let x = norm.forward(x);
                self.forward(if apply_silu { silu(x) } else { x })
            }
            Conv::Cpu(CpuConvLayer { layer }) => {
                let [b, c, h, w] = x.dims();
                let device = x.device();
                let mut input = host_f32(x);
                let affine = |p: &Option<burn::module::Param<Tensor<1>>>, fill: f32| match p {
                    Some(p) => host_f32(p.val()),
                    None => vec![fill; c],
                };
                let (gamma, beta) = (affine(&norm.gamma, 1.0), affine(&norm.beta, 0.0));
                group_norm(
                    &mut input,
                    c,
                    h * w,
                    norm.num_groups,
                    &gamma,
                    &beta,
                    norm.epsilon,
                    apply_silu,
                );
                layer_forward(layer, input, b, h, w, &device)
            }
        }
    }
}

/// The packed layer on host values, its output back as a burn tensor on `device`.
fn layer_forward(
    layer: &CpuConv,
    input: Vec<f32>,
    b: usize,
    h: usize,
    w: usize,
    device: &burn::tensor::Device,
) -> Tensor<4> {
    let y = layer.forward(&input, b, h, w);
    let (ho, wo) = layer.output_size(h, w);
    Tensor::from_data(TensorData::new(y, [b, layer.c_out(), ho, wo]), device)
}
