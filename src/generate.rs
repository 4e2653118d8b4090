//! The one next-scale generation loop (reference `autoregressive_infer_cfg`, paper Fig. 4).
//!
//! Each scale: the transformer predicts all pn² tokens at once (both CFG halves in one batch),
//! the logits are read back once, guided and sampled on the CPU, the chosen code vectors are
//! upsampled, refined by φ and added to f̂, and f̂ is downsampled into the next scale's input.
//! In-painting and editing plug an [`EditSource`] into this same loop.

use std::ops::ControlFlow;

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Result, VarError};
use crate::model::Model;
use crate::sampler::{
    Rng, SamplingParams, cfg_mix, cfg_strength, filter_top_k_top_p, gumbel_soft_weights,
    sample_index, smooth_tau,
};

/// What the per-scale callback sees after scale `si` is sampled and added to f̂.
pub struct ScaleStep<'a> {
    /// Scale index, 0 .. K − 1.
    pub si: usize,
    /// Side of this scale's token map.
    pub patch: usize,
    /// The sampled tokens, `[B, pn²]` row-major.
    pub tokens: &'a [u32],
    /// f̂ after this scale, `[B, Cvae, N, N]`; decode it for a preview.
    pub f_hat: &'a Tensor<4>,
}

/// Tokens to keep from a source image (the seam for in-painting, out-painting and editing):
/// at scale `si`, where `keep[si][j]` holds, token j of every row is the source's
/// `tokens[si][b·pn² + j]` instead of a sampled one.
#[derive(Clone, Debug)]
pub struct EditSource {
    pub tokens: Vec<Vec<u32>>,
    pub keep: Vec<Vec<bool>>,
}

/// Generates one image per label (`labels` < num_classes, or `num_classes` for the null class)
/// and returns them as `[B, 3, H, W]` in [0, 1].
///
/// `on_scale` runs after every scale; returning `ControlFlow::Break` cancels the run
/// (→ [`VarError::Cancelled`]) before the next scale starts.
pub async fn generate(
    model: &Model,
    labels: &[usize],
    params: &SamplingParams,
    edit: Option<&EditSource>,
    mut on_scale: impl FnMut(&ScaleStep) -> ControlFlow<()>,
) -> Result<Tensor<4>> {
    params.validate()?;
    let cfg = &model.config;
    let num_classes = cfg.var.num_classes;
    if labels.is_empty() {
        return Err(VarError::InvalidArgument(
            "at least one class label is needed".into(),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l > num_classes) {
        return Err(VarError::InvalidArgument(format!(
            "class {bad} does not exist: this model has classes 0..{} (and {num_classes} for unconditional)",
            num_classes - 1
        )));
    }
    let patch_nums = &cfg.patch_nums;
    let k = patch_nums.len();
    if let Some(edit) = edit {
        edit.check(labels.len(), patch_nums)?;
    }

    let device = model.device();
    let b = labels.len();
    let (vocab, cvae) = (cfg.vqvae.vocab_size, cfg.vqvae.z_channels);
    let var = &model.var;
    let quant = &model.vqvae.quantize;

    // Rows [0, B) are conditional, rows [B, 2B) use the null class (classifier-free guidance).
    let both: Vec<i64> = labels
        .iter()
        .map(|&l| l as i64)
        .chain(std::iter::repeat_n(num_classes as i64, b))
        .collect();
    let cond = var.condition(Tensor::<1, Int>::from_data(
        TensorData::new(both, [2 * b]),
        &device,
    ));
    let lvl_pos = var.level_positions();
    let mut caches = var.new_caches(2 * b, &device);
    let mut x = var.first_scale_input(&cond, &lvl_pos);
    let mut f_hat = quant.zeros_fhat(b, &device);
    let mut rng = Rng::new(params.seed);
    // The codebook on the CPU, read once per run: sampled tokens become code vectors here.
    let codebook = read_f32(quant.embedding.val()).await?; // [V, Cvae]
    let code = |i: usize| &codebook[i * cvae..(i + 1) * cvae];

    for (si, &pn) in patch_nums.iter().enumerate() {
        let l = pn * pn;
        let logits = var.forward_scale(x, &cond, &mut caches); // [2B, l, V]
        let logits = read_f32(logits).await?;

        let t = cfg_strength(params.cfg, si, k);
        let ratio = si as f64 / (k - 1) as f64;
        let mut tokens = vec![0u32; b * l];
        let mut h = vec![0f32; b * cvae * l]; // [B, Cvae, pn, pn]
        let keep = edit.map(|e| (&e.tokens[si], &e.keep[si]));
        for row in 0..b {
            for j in 0..l {
                let at = |r: usize| (r * l + j) * vocab;
                let mut lg = logits[at(row)..at(row) + vocab].to_vec();
                cfg_mix(&mut lg, &logits[at(b + row)..at(b + row) + vocab], t);
                if params.temperature != 1.0 {
                    lg.iter_mut().for_each(|x| *x /= params.temperature);
                }
                filter_top_k_top_p(&mut lg, params.top_k, params.top_p);
                let idx = sample_index(&lg, &mut rng);
                let vector: Vec<f32> = if params.more_smooth {
                    let w = gumbel_soft_weights(&lg, ratio, smooth_tau(si, k), &mut rng);
                    soft_code(&w, &codebook, cvae)
                } else {
                    code(idx).to_vec()
                };
                let (idx, vector) = match keep {
                    Some((src, mask)) if mask[j] => {
                        let s = src[row * l + j] as usize;
                        (s, code(s).to_vec())
                    }
                    _ => (idx, vector),
                };
                tokens[row * l + j] = idx as u32;
                for (c, v) in vector.into_iter().enumerate() {
                    h[(row * cvae + c) * l + j] = v;
                }
            }
        }
        let h = Tensor::<4>::from_data(TensorData::new(h, [b, cvae, pn, pn]), &device);
        f_hat = quant.accumulate(f_hat, h, si);

        let step = ScaleStep {
            si,
            patch: pn,
            tokens: &tokens,
            f_hat: &f_hat,
        };
        if on_scale(&step).is_break() {
            return Err(VarError::Cancelled);
        }
        x = if si + 1 < k {
            let next = quant.next_scale_input(f_hat.clone(), si + 1); // [B, pn², Cvae]
            let next = var.scale_input(si + 1, next, &lvl_pos);
            Tensor::cat(vec![next.clone(), next], 0) // both CFG halves see the same f̂
        } else {
            break;
        };
    }
    Ok((model.vqvae.fhat_to_img(f_hat) + 1.0) * 0.5)
}

/// Reads a tensor back to the CPU without blocking (the browser forbids blocking reads).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| VarError::Device(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| VarError::Device(format!("{e:?}")))
}

/// `weights @ codebook`: the "more smooth" blend of all code vectors.
fn soft_code(weights: &[f32], codebook: &[f32], cvae: usize) -> Vec<f32> {
    let mut out = vec![0f32; cvae];
    for (w, row) in weights.iter().zip(codebook.chunks_exact(cvae)) {
        if *w != 0.0 {
            out.iter_mut().zip(row).for_each(|(o, e)| *o += w * e);
        }
    }
    out
}

impl EditSource {
    fn check(&self, batch: usize, patch_nums: &[usize]) -> Result<()> {
        let ok = self.tokens.len() == patch_nums.len()
            && self.keep.len() == patch_nums.len()
            && patch_nums.iter().enumerate().all(|(si, pn)| {
                self.tokens[si].len() == batch * pn * pn && self.keep[si].len() == pn * pn
            });
        if ok {
            Ok(())
        } else {
            Err(VarError::InvalidArgument(
                "the edit source's tokens or masks do not match the model's scales".into(),
            ))
        }
    }
}
