//! The VQ-VAE's convolutions, with the storage decided at load: burn's `Conv2d` (training, the
//! GPU), or packed for our CPU kernels ([`CpuConv`], inference). One module type, like the
//! transformer's [`super::Dense`]; [`super::Loader::conv`] picks the variant.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};

use crate::kernels::cpu::CpuConv;

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
                let input = x
                    .into_data()
                    .try_into_vec::<f32>()
                    .expect("the CPU kernels take f32 activations");
                let y = layer.forward(&input, b, h, w);
                let (ho, wo) = layer.output_size(h, w);
                Tensor::from_data(TensorData::new(y, [b, layer.c_out(), ho, wo]), &device)
            }
        }
    }
}
