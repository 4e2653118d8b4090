//! What training shows of a checkpoint: the teacher-forced loss and accuracy on held-out test
//! images (logged as `val_loss`, `val_accuracy`), and the grid of samples (`samples.png`).

use std::ops::ControlFlow;

use super::loss::batch_loss;
use super::tokens::TokenSet;
use crate::error::Result;
use crate::generate::generate;
use crate::model::Model;
use crate::readback::read_f32;
use crate::transformer::Var;
use crate::vqvae::VqVae;

/// Held-out test images scored at every checkpoint.
pub(super) const VALIDATION_IMAGES: usize = 1_000;

/// Teacher-forced loss and accuracy over a whole token set, without gradients.
pub(super) fn evaluate(var: &Var, vae: &VqVae, set: &TokenSet) -> Result<(f32, f32)> {
    let device = vae.quantize.embedding.val().device();
    let (mut loss, mut acc, mut n) = (0f64, 0f64, 0usize);
    for start in (0..set.len()).step_by(100) {
        let idx: Vec<usize> = (start..(start + 100).min(set.len())).collect();
        let labels = idx.iter().map(|&i| set.labels[i] as usize).collect();
        let (l, a) = batch_loss(var, vae, set, &idx, labels, &device)?;
        loss += l.into_scalar::<f32>() as f64 * idx.len() as f64;
        acc += a.into_scalar::<f32>() as f64 * idx.len() as f64;
        n += idx.len();
    }
    Ok(((loss / n as f64) as f32, (acc / n as f64) as f32))
}

/// A grid of samples: one row per class, `per_class` seeds, with the model's default sampling.
pub fn sample_grid(model: &Model, per_class: usize, seed: u64) -> Result<Vec<u8>> {
    let classes = model.config.var.num_classes;
    let labels: Vec<usize> = (0..classes)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let params = model.config.sampling.with_seed(seed);
    let images = pollster::block_on(async {
        let t = generate(model, &labels, &params, None, |_| ControlFlow::Continue(())).await?;
        read_f32(t).await
    })?;
    let size = model.config.image_size;
    let rgb = Model::to_rgb8(&images, labels.len(), size);
    crate::picture::grid_png(&rgb, size, per_class)
}
