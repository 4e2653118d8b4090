//! The transformer's Linear layers, in f32 (training, the CPU, f32 models) or int8 on the GPU
//! ([`Int8Linear`]: the weights stay packed int8 in GPU memory, dequantized inside our WGSL
//! matmul). One module type, so the model code is the same for every precision.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::kernels::Int8Linear;

#[derive(Module, Debug)]
pub struct Dense {
    linear: Option<Linear>,
    #[module(skip)]
    int8: Option<Int8Linear>,
}

impl Dense {
    pub fn float(linear: Linear) -> Self {
        Self {
            linear: Some(linear),
            int8: None,
        }
    }

    pub fn int8(layer: Int8Linear) -> Self {
        Self {
            linear: None,
            int8: Some(layer),
        }
    }

    /// Whether the weights are int8 codes (on the GPU).
    pub fn is_int8(&self) -> bool {
        self.int8.is_some()
    }

    /// `x [..., d_in] → [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match (&self.linear, &self.int8) {
            (Some(linear), _) => linear.forward(x),
            (None, Some(q)) => {
                let mut dims = x.dims();
                let rows = dims[..D - 1].iter().product::<usize>();
                let y = q.forward(x.reshape([rows, q.d_in()]));
                dims[D - 1] = q.d_out();
                y.reshape(dims)
            }
            (None, None) => unreachable!("a Dense layer is built with weights"),
        }
    }
}
