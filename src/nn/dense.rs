//! The transformer's Linear layers, with the storage decided at load: f32 in burn's `Linear`
//! (training, f32 models, any device), int8 on the GPU ([`Int8Linear`]: the weights stay
//! packed int8 in GPU memory, dequantized inside our WGSL matmul), or packed for our CPU
//! kernels ([`CpuLinear`], inference). One module type, so the model code is the same for
//! every precision and device; [`super::Loader::dense`] picks the variant.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};

use crate::kernels::cpu::CpuLinear;
use crate::kernels::int8::Int8Linear;

#[derive(Module, Debug)]
pub enum Dense {
    /// burn's Linear: the only variant with parameters, so the only one that trains and exports.
    Float(Linear),
    /// int8 codes and per-channel scales in GPU memory.
    Int8(Int8Dense),
    /// f32 weights packed once for the CPU kernels.
    Cpu(CpuDense),
}

/// [`Dense::Int8`]'s layer (no burn parameters: the codes are not trainable).
#[derive(Module, Debug)]
pub struct Int8Dense {
    /// Boxed: burn's tensor handles make the layer about a kilobyte, and the enum would be
    /// that large for every variant.
    #[module(skip)]
    layer: Box<Int8Linear>,
}

/// [`Dense::Cpu`]'s layer (no burn parameters: the packing is for inference).
#[derive(Module, Debug)]
pub struct CpuDense {
    #[module(skip)]
    layer: Arc<CpuLinear>,
}

impl Dense {
    pub fn int8(layer: Int8Linear) -> Self {
        Dense::Int8(Int8Dense {
            layer: Box::new(layer),
        })
    }

    pub fn cpu(layer: CpuLinear) -> Self {
        Dense::Cpu(CpuDense {
            layer: Arc::new(layer),
        })
    }

    /// Whether the weights are int8 codes (on the GPU).
    pub fn is_int8(&self) -> bool {
        matches!(self, Dense::Int8(_))
    }

    /// Whether the layer runs on our CPU kernels.
    pub fn is_cpu_packed(&self) -> bool {
        matches!(self, Dense::Cpu(_))
    }

    /// The packed layer, when this one runs on our CPU kernels: for callers that keep the
    /// activations on the host between layers.
    pub fn cpu_layer(&self) -> Option<&CpuLinear> {
        match self {
            Dense::Cpu(CpuDense { layer }) => Some(layer.as_ref()),
            _ => None,
        }
    }

    /// `x W` and the bias still to be added, for a caller whose next GPU kernel adds it
    /// (saving the addition's dispatch). Only a layer on a GPU whose product is burn's
    /// matmul splits its bias off (f32, and int8 above the direct kernel's rows); otherwise
    /// the layer adds it itself (the direct int8 and the CPU kernels do it inside the
    /// product) and `None` comes back, so the CPU and training paths are unchanged.
    pub fn forward_unbiased<const D: usize>(&self, x: Tensor<D>) -> (Tensor<D>, Option<Tensor<1>>) {
        match self {
            Dense::Float(Linear {
                weight,
                bias: Some(bias),
                ..
            }) if crate::kernels::on_gpu(&x) => (
                burn::tensor::module::linear(x, weight.val(), None),
                Some(bias.val()),
            ),
            Dense::Int8(Int8Dense { layer }) => {
                let mut dims = x.dims();
                let rows = dims[..D - 1].iter().product::<usize>();
                let (y, bias) = layer.forward_unbiased(x.reshape([rows, layer.d_in()]));
                dims[D - 1] = layer.d_out();
                (y.reshape(dims), bias)
            }
            _ => (self.forward(x), None),
        }
    }

    /// `x [..., d_in] → [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        match self {
            Dense::Float(linear) => linear.forward(x),
            Dense::Int8(Int8Dense { layer }) => {
                let y = layer.forward(x.reshape([rows, layer.d_in()]));
                dims[D - 1] = layer.d_out();
                y.reshape(dims)
            }
            Dense::Cpu(CpuDense { layer }) => {
                let device = x.device();
                let y = layer.forward(&super::host_f32(x), rows);
                dims[D - 1] = layer.d_out();
                Tensor::from_data(TensorData::new(y, dims), &device)
            }
        }
    }
}
