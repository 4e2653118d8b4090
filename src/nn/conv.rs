//! The VQ-VAE's convolutions: burn's `Conv2d` (training, the GPU), or packed for our CPU
//! kernels at inference ([`CpuConv`]). One module type, like the transformer's `Dense`.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};

use crate::kernels::cpu::CpuConv;

#[derive(Module, Debug)]
pub struct Conv {
    conv2d: Option<Conv2d>,
    /// The weight packed for the CPU kernels; replaces `conv2d`, so a packed layer has no
    /// parameters left for burn to train or export.
    #[module(skip)]
    cpu: Option<Arc<CpuConv>>,
}

impl From<Conv2d> for Conv {
    fn from(conv2d: Conv2d) -> Self {
        Self {
            conv2d: Some(conv2d),
            cpu: None,
        }
    }
}

impl Conv {
    /// Moves the weight into the CPU kernels' packing (see [`crate::Model::use_cpu_kernels`]).
    /// Grouped, dilated and non-square convolutions (none in the VQ-VAE) stay with burn.
    pub fn pack_for_cpu(&mut self) {
        let Some(conv) = &self.conv2d else {
            return;
        };
        let [c_out, c_in, kh, kw] = conv.weight.dims();
        let padding = match conv.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Same => return,
        };
        if conv.groups != 1
            || conv.dilation != [1, 1]
            || kh != kw
            || conv.stride[0] != conv.stride[1]
        {
            return;
        }
        let values = |data: TensorData| {
            data.try_into_vec::<f32>()
                .expect("a float convolution holds f32 values")
        };
        let weight = values(conv.weight.val().into_data());
        let bias = conv.bias.as_ref().map(|b| values(b.val().into_data()));
        let packed = CpuConv::new(&weight, c_in, c_out, kh, conv.stride[0], padding, bias);
        self.cpu = Some(Arc::new(packed));
        self.conv2d = None;
    }

    /// `[B, c_in, H, W]` → `[B, c_out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(conv) = &self.conv2d {
            return conv.forward(x);
        }
        let cpu = self
            .cpu
            .as_ref()
            .expect("a Conv layer is built with weights");
        let [b, _, h, w] = x.dims();
        let device = x.device();
        let input = x
            .into_data()
            .try_into_vec::<f32>()
            .expect("the CPU kernels take f32 activations");
        let y = cpu.forward(&input, b, h, w);
        let (ho, wo) = cpu.output_size(h, w);
        Tensor::from_data(TensorData::new(y, [b, cpu.c_out(), ho, wo]), &device)
    }
}
