//! The transformer's Linear layers, in f32 (training, f32 models), int8 on the GPU
//! ([`Int8Linear`]: the weights stay packed int8 in GPU memory, dequantized inside our WGSL
//! matmul), or packed for our CPU kernels at inference ([`CpuLinear`]). One module type, so
//! the model code is the same for every precision and device.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};

use crate::kernels::cpu::CpuLinear;
use crate::kernels::int8::Int8Linear;

#[derive(Module, Debug)]
pub struct Dense {
    linear: Option<Linear>,
    #[module(skip)]
    int8: Option<Int8Linear>,
    /// The weight packed for the CPU kernels; replaces `linear`, so a packed layer has no
    /// parameters left for burn to train or export.
    #[module(skip)]
    cpu: Option<Arc<CpuLinear>>,
}

impl Dense {
    pub fn float(linear: Linear) -> Self {
        Self {
            linear: Some(linear),
            int8: None,
            cpu: None,
        }
    }

    pub fn int8(layer: Int8Linear) -> Self {
        Self {
            linear: None,
            int8: Some(layer),
            cpu: None,
        }
    }

    /// Whether the weights are int8 codes (on the GPU).
    pub fn is_int8(&self) -> bool {
        self.int8.is_some()
    }

    /// Moves an f32 layer's weight into the CPU kernels' packing (see
    /// [`crate::Model::use_cpu_kernels`]); int8 GPU layers and packed ones are left as they are.
    pub fn pack_for_cpu(&mut self) {
        let Some(linear) = self.linear.take() else {
            return;
        };
        let [d_in, d_out] = linear.weight.dims();
        let values = |data: TensorData| {
            data.try_into_vec::<f32>()
                .expect("a float Linear layer holds f32 values")
        };
        let weight = values(linear.weight.val().into_data());
        let bias = linear.bias.map(|b| values(b.val().into_data()));
        self.cpu = Some(Arc::new(CpuLinear::from_f32(&weight, d_in, d_out, bias)));
    }

    /// `x [..., d_in] → [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(linear) = &self.linear {
            return linear.forward(x);
        }
        let mut dims = x.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        if let Some(q) = &self.int8 {
            let y = q.forward(x.reshape([rows, q.d_in()]));
            dims[D - 1] = q.d_out();
            return y.reshape(dims);
        }
        let cpu = self
            .cpu
            .as_ref()
            .expect("a Dense layer is built with weights");
        let device = x.device();
        let input = x
            .into_data()
            .try_into_vec::<f32>()
            .expect("the CPU kernels take f32 activations");
        let y = cpu.forward(&input, rows);
        dims[D - 1] = cpu.d_out();
        Tensor::from_data(TensorData::new(y, dims), &device)
    }
}
