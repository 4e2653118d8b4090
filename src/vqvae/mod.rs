//! The multi-scale VQ-VAE (paper §3.2): encoder E, quantizer Q with Algorithms 1 and 2,
//! decoder D.

pub mod blocks;
pub mod decoder;
pub mod encoder;
pub mod quantizer;
pub mod resample;

use crate::nn::Conv;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::tensor::{Int, Tensor};

use crate::config::VqvaeConfig;
use crate::error::Result;
use crate::nn::Loader;
use crate::nn::export::{HasParamKeys, ParamKeys};
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use quantizer::Quantizer;

/// The whole VQ-VAE with the reference's key layout (`encoder.*`, `decoder.*`, `quant_conv`,
/// `post_quant_conv`, `quantize.*`).
#[derive(Module, Debug)]
pub struct VqVae {
    pub encoder: Encoder,
    pub decoder: Decoder,
    quant_conv: Conv,
    post_quant_conv: Conv,
    pub quantize: Quantizer,
    /// The reference key of every parameter, for the exporter.
    #[module(skip)]
    keys: ParamKeys,
}

impl VqVae {
    /// Builds the VQ-VAE for a given scale schedule from reference-named tensors.
    pub fn load(w: &mut Loader, cfg: &VqvaeConfig, patch_nums: &[usize]) -> Result<Self> {
        let c = cfg.z_channels;
        let pad1 = PaddingConfig2d::Explicit(1, 1, 1, 1);
        Ok(Self {
            encoder: Encoder::load(w, "encoder", cfg)?,
            decoder: Decoder::load(w, "decoder", cfg)?,
            quant_conv: w.conv("quant_conv", c, c, 3, 1, pad1.clone())?,
            post_quant_conv: w.conv("post_quant_conv", c, c, 3, 1, pad1)?,
            quantize: Quantizer::load(w, cfg, patch_nums)?,
            keys: w.keys(),
        })
    }

    /// The continuous latent f = quant_conv(E(img)): `[B, 3, H, W]` → `[B, Cvae, N, N]`.
    pub fn img_to_f(&self, img: Tensor<4>) -> Tensor<4> {
        self.quant_conv.forward(self.encoder.forward(img))
    }

    /// `img_to_idxBl`: image in [-1, 1] → tokens per scale (Algorithm 1), plus the f̂ they
    /// reconstruct.
    pub fn img_to_tokens(&self, img: Tensor<4>) -> (Vec<Tensor<2, Int>>, Tensor<4>) {
        self.quantize.encode(self.img_to_f(img))
    }

    /// `D(post_quant_conv(f̂))`, not clamped (what training compares with the input).
    pub fn decode(&self, f_hat: Tensor<4>) -> Tensor<4> {
        self.decoder.forward(self.post_quant_conv.forward(f_hat))
    }

    /// `fhat_to_img`: `clamp(D(post_quant_conv(f̂)), −1, 1)`, `[B, Cvae, N, N]` → `[B, 3, H, W]`.
    pub fn fhat_to_img(&self, f_hat: Tensor<4>) -> Tensor<4> {
        self.decode(f_hat).clamp(-1.0, 1.0)
    }

    /// Tokens per scale → image in [-1, 1] (Algorithm 2 then the decoder).
    pub fn tokens_to_img(&self, tokens: &[Tensor<2, Int>]) -> Tensor<4> {
        self.fhat_to_img(self.quantize.decode(tokens))
    }
}

impl HasParamKeys for VqVae {
    fn param_keys(&self) -> &ParamKeys {
        &self.keys
    }
}
