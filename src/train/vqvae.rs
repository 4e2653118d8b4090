//! Training the multi-scale VQ-VAE (the reference ships no training code for it).
//!
//! Loss = reconstruction (MSE + L1 on pixels in [-1, 1]) + the multi-scale quantization loss of
//! the reference's `VectorQuantizer2.forward`: after each scale k,
//! `β·‖sg(f̂_k) − f‖² + ‖f̂_k − sg(f)‖²` (commitment to the encoder, codebook/φ to the target),
//! averaged over scales, with the straight-through estimator `f̂ = sg(f̂ − f) + f` feeding the
//! decoder.

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
    let q = &vae.quantize;
    let k = q.scales.num_scales();
    let target = f.clone().detach();
    let mut f_rest = target.clone();
    let mut f_hat = target.zeros_like();
    let mut loss: Option<Tensor<1>> = None;
    for si in 0..k {
        let z = if si + 1 == k {
            f_rest.clone()
        } else {
            q.scales.area_down(f_rest.clone(), si)
        };
        let idx = q.nearest(z);
        let h = q.refine(q.embed(idx), si);
        f_hat = f_hat + h.clone();
        f_rest = f_rest - h.detach();
        let term =
            mse(f_hat.clone().detach(), f.clone()) * beta + mse(f_hat.clone(), target.clone());
        loss = Some(match loss {
            Some(l) => l + term,
            None => term,
        });
    }
    let loss = loss.expect("at least one scale") / k as f64;
    let straight_through = (f_hat - target).detach() + f;
    (straight_through, loss)
}

/// The full VQ-VAE loss on a batch of images in [-1, 1], `[B, 3, H, W]`.
pub fn vqvae_loss(vae: &VqVae, img: Tensor<4>, beta: f64) -> VqvaeLoss {
    let f = vae.img_to_f(img.clone());
    let (f_hat, quantization) = quantize_with_loss(vae, f, beta);
    let recon = vae.decode(f_hat);
    let reconstruction = mse(recon.clone(), img.clone()) + (recon - img).abs().mean();
    VqvaeLoss {
        total: reconstruction.clone() + quantization.clone(),
        reconstruction,
        quantization,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, VarConfig, VqvaeConfig};
    use crate::model::Model;
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::{Device, Distribution};

    fn tiny_config() -> ModelConfig {
        ModelConfig {
            name: "tiny-train".into(),
            image_size: 8,
            patch_nums: vec![1, 2, 4],
            vqvae: VqvaeConfig {
                vocab_size: 16,
                z_channels: 4,
                ch: 32,
                ch_mult: vec![1, 1],
                num_res_blocks: 1,
                attn_in_last_level: false,
                attn_in_mid: true,
                in_channels: 3,
                quant_resi: 0.5,
                share_quant_resi: 4,
            },
            var: VarConfig {
                depth: 1,
                embed_dim: 32,
                num_heads: 2,
                num_classes: 2,
                mlp_ratio: 2.0,
                attn_l2_norm: true,
                shared_aln: false,
            },
            class_names: vec!["a".into(), "b".into()],
            sampling: Default::default(),
            storage: Default::default(),
        }
    }

    #[test]
    fn adamw_steps_lower_the_loss_on_a_tiny_batch() {
        let device = Device::flex().autodiff();
        let model = Model::random(tiny_config(), 3, &device).unwrap();
        let mut vae = model.vqvae;
        let img = Tensor::<4>::random([4, 3, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let mut optim = AdamWConfig::new().init();
        let loss_of = |vae: &VqVae| -> f32 {
            vqvae_loss(vae, img.clone(), 0.25)
                .total
                .into_scalar::<f32>()
        };
        let first = loss_of(&vae);
        for _ in 0..10 {
            let loss = vqvae_loss(&vae, img.clone(), 0.25);
            let grads = GradientsParams::from_grads(loss.total.backward(), &vae);
            vae = optim.step(3e-3, vae, grads);
        }
        let last = loss_of(&vae);
        assert!(first.is_finite() && last.is_finite());
        assert!(last < 0.8 * first, "loss {first} -> {last}");
    }
}
