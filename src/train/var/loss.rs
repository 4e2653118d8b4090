//! The transformer's training objective: teacher forcing through the frozen VQ-VAE's
//! `idxBl_to_var_input`, and cross-entropy (with top-1 accuracy) on every token of every scale.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::tokens::TokenSet;
use crate::error::Result;
use crate::transformer::Var;
use crate::vqvae::VqVae;

/// Mean cross-entropy and top-1 accuracy of `logits` `[B, L, V]` against `targets` `[B·L]`.
pub fn token_loss(logits: Tensor<3>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
    let [b, l, v] = logits.dims();
    let logits = logits.reshape([b * l, v]);
    let hit = logits
        .clone()
        .argmax(1)
        .reshape([b * l])
        .equal(targets.clone())
        .float()
        .mean();
    let nll = log_softmax(logits, 1)
        .gather(1, targets.reshape([b * l, 1]))
        .mean()
        .neg();
    (nll, hit)
}

/// The teacher-forced loss of `var` on a batch, the VQ-VAE (frozen, on the plain device)
/// providing `idxBl_to_var_input`.
pub(super) fn batch_loss(
    var: &Var,
    vae: &VqVae,
    set: &TokenSet,
    idx: &[usize],
    labels: Vec<usize>,
    device: &Device,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let frozen = vae.quantize.embedding.val().device();
    let patch_nums = var.patch_nums().to_vec();
    let (per_scale, _, _) = set.batch(idx, &patch_nums, &frozen);
    let x = vae.quantize.teacher_forcing_input(&per_scale);
    // A constant input of the tracked graph (no copy): the VQ-VAE gets no gradient. With data
    // parallelism the share's device may not be the frozen VQ-VAE's.
    let x = if device.is_autodiff() {
        x.to_device(&device.clone().inner()).autodiff()
    } else {
        x.to_device(device)
    };
    let (_, targets, _) = set.batch(idx, &patch_nums, device);
    let n = labels.len();
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(labels.into_iter().map(|c| c as i64).collect(), [n]),
        device,
    );
    Ok(token_loss(var.forward(labels, x), targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::train::data::{FashionMnist, ImageSet, Split, fashion_mnist_fit};
    use crate::train::var::tests::tiny_vqvae_dir;
    use crate::train::var::tokens::load_frozen;
    use burn::optim::{AdamWConfig, GradientsParams};
    use std::path::Path;

    #[test]
    fn adamw_steps_lower_the_teacher_forced_loss() {
        let root = tempfile::tempdir().unwrap();
        let (config, dir) = tiny_vqvae_dir(root.path());
        let frozen = load_frozen(&dir, &Device::flex()).unwrap();
        let data = FashionMnist::load(Path::new(crate::train::data::DEFAULT_DIR), Split::Test)
            .expect("Fashion-MNIST is not installed: run ./scripts/setup.sh");
        let data = ImageSet::from_fashion_mnist(&data.first(8), 32, fashion_mnist_fit(32));
        let set = TokenSet::encode(&frozen.vae, &data, 8, |_, _| {}).unwrap();
        assert_eq!(set.seq_len, 1 + 4 + 16 + 64 + 256);
        let device = Device::flex().autodiff();
        let mut var = Model::random(config, 1, &device).unwrap().var;
        let idx: Vec<usize> = (0..8).collect();
        let labels: Vec<usize> = idx.iter().map(|&i| set.labels[i] as usize).collect();
        let loss = |var: &Var| {
            batch_loss(var, &frozen.vae, &set, &idx, labels.clone(), &device)
                .unwrap()
                .0
        };
        let first = loss(&var).into_scalar::<f32>();
        assert!(
            (first - (16f32).ln()).abs() < 0.5,
            "starts near ln(vocab): {first}"
        );
        let mut optim = AdamWConfig::new().init();
        for _ in 0..15 {
            let grads = GradientsParams::from_grads(loss(&var).backward(), &var);
            var = optim.step(1e-2, var, grads);
        }
        let last = loss(&var).into_scalar::<f32>();
        assert!(last < 0.75 * first, "loss {first} -> {last}");
    }
}
