//! The VQ-VAE's training loss (the reference ships no training code for it): reconstruction
//! (MSE + L1 on pixels in [-1, 1]) + the multi-scale quantization loss of the reference's
//! `VectorQuantizer2.forward`: after each scale k, `β·‖sg(f̂_k) − f‖² + ‖f̂_k − sg(f)‖²`
//! (commitment to the encoder, codebook/φ to the target), averaged over scales, with the
//! straight-through estimator `f̂ = sg(f̂ − f) + f` feeding the decoder.
//!
//! Decoder-only fine-tuning ([`decoder_loss`]) keeps the reconstruction term alone, on the
//! frozen encoder's f̂.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::vqvae::VqVae;

/// The parts of one batch's loss, each a scalar tensor.
pub struct VqvaeLoss {
    pub total: Tensor<1>,
    pub reconstruction: Tensor<1>,
    pub quantization: Tensor<1>,
}

fn mse(a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
    (a - b).powf_scalar(2.0).mean()
}

/// Algorithm 1 with its training losses: returns the straight-through f̂ and the mean
/// quantization loss. Token choice (argmin) carries no gradient; the codebook and φ get theirs
/// from the `‖f̂_k − sg(f)‖²` terms, the encoder from the commitment terms and through the
/// straight-through f̂.
pub fn quantize_with_loss(vae: &VqVae, f: Tensor<4>, beta: f64) -> (Tensor<4>, Tensor<1>) {
    let target = f.clone().detach();
    let mut terms: Vec<Tensor<1>> = Vec::new();
    let (_, f_hat) = vae.quantize.encode_with(target.clone(), |f_hat| {
        terms.push(
            mse(f_hat.clone().detach(), f.clone()) * beta + mse(f_hat.clone(), target.clone()),
        );
    });
    let k = terms.len() as f64;
    let loss = terms
        .into_iter()
        .reduce(|a, b| a + b)
        .expect("at least one scale")
        / k;
    let straight_through = (f_hat - target).detach() + f;
    (straight_through, loss)
}

/// The full VQ-VAE loss on a batch of images in [-1, 1], `[B, 3, H, W]`: reconstruction
/// (MSE, plus L1 when `with_l1`) and the multi-scale quantization loss.
pub fn vqvae_loss(vae: &VqVae, img: Tensor<4>, beta: f64, with_l1: bool) -> VqvaeLoss {
    let f = vae.img_to_f(img.clone());
    let (f_hat, quantization) = quantize_with_loss(vae, f, beta);
    let recon = vae.decode(f_hat);
    let reconstruction = reconstruction_loss(recon, img, with_l1);
    VqvaeLoss {
        total: reconstruction.clone() + quantization.clone(),
        reconstruction,
        quantization,
    }
}

/// MSE, plus the mean absolute error when `with_l1`.
fn reconstruction_loss(recon: Tensor<4>, img: Tensor<4>, with_l1: bool) -> Tensor<1> {
    if with_l1 {
        mse(recon.clone(), img.clone()) + (recon - img).abs().mean()
    } else {
        mse(recon, img)
    }
}

/// The loss of decoder-only fine-tuning: reconstruction from the frozen encoder's f̂. Only
/// `post_quant_conv` and the decoder receive gradients, so the token maps (and a transformer
/// trained on them) stay valid while the reconstructions improve.
pub fn decoder_loss(vae: &VqVae, img: Tensor<4>, with_l1: bool) -> VqvaeLoss {
    let frozen = vae.valid();
    let (_, f_hat) = frozen.img_to_tokens(img.clone().inner());
    let recon = vae.decode(f_hat.autodiff());
    let reconstruction = reconstruction_loss(recon, img, with_l1);
    VqvaeLoss {
        total: reconstruction.clone(),
        quantization: reconstruction.zeros_like(),
        reconstruction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::{Device, Distribution};

    #[test]
    fn adamw_steps_lower_the_loss_on_a_tiny_batch() {
        let device = Device::flex().autodiff();
        let model = Model::random(crate::train::tiny_config(), 3, &device).unwrap();
        let mut vae = model.vqvae;
        let img = Tensor::<4>::random([4, 3, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let mut optim = AdamWConfig::new().init();
        let loss_of = |vae: &VqVae| -> f32 {
            vqvae_loss(vae, img.clone(), 0.25, true)
                .total
                .into_scalar::<f32>()
        };
        let first = loss_of(&vae);
        for _ in 0..10 {
            let loss = vqvae_loss(&vae, img.clone(), 0.25, true);
            let grads = GradientsParams::from_grads(loss.total.backward(), &vae);
            vae = optim.step(3e-3, vae, grads);
        }
        let last = loss_of(&vae);
        assert!(first.is_finite() && last.is_finite());
        assert!(last < 0.8 * first, "loss {first} -> {last}");
    }
}
