//! The one next-scale generation loop (reference `autoregressive_infer_cfg`, paper Fig. 4).
//!
//! Each scale: the transformer predicts all pn² tokens at once (both CFG halves in one batch),
//! the logits are read back once, guided and sampled on the CPU, the chosen code vectors are
//! upsampled, refined by φ and added to f̂, and f̂ is downsampled into the next scale's input.
//!
//! [`Generation`] runs the loop one scale per [`Generation::step`], so async callers (the
//! browser worker) can decode previews and yield between scales; [`generate`] drives it to the
//! end with a per-scale callback. In-painting and editing plug an [`EditSource`] into it.

use std::ops::ControlFlow;

use burn::tensor::{Int, Tensor, TensorData};

use crate::config::SamplingParams;
use crate::error::{Result, VarError};
use crate::model::Model;
use crate::readback::read_f32;
use crate::rng::Rng;
use crate::sampler::{
    cfg_mix, cfg_strength, filter_top_k_top_p, gumbel_soft_weights, sample_index, smooth_tau,
};
use crate::transformer::{Condition, KvCache};

/// The largest latent a per-scale preview decodes (8: a quarter of the official 16x16).
pub const PREVIEW_LATENT: usize = 8;

/// Whether one image of a model with `config` previews its scales by decoding f̂ in full
/// ([`ScalePicture::Full`]): its latent is at most [`PREVIEW_LATENT`] across.
pub fn previews_in_full(config: &crate::config::ModelConfig) -> bool {
    config.latent_size() <= PREVIEW_LATENT
}

/// The picture shown after a scale ([`Generation::picture_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalePicture {
    /// The last scale: the final images.
    Final,
    /// A preview that is f̂ decoded in full, as the final images are (and as costly).
    Full,
    /// A preview of f̂ area-averaged to `side`² latent positions ([`Generation::preview`]).
    Reduced(usize),
}

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

/// A generation in progress: everything that lives from one scale to the next.
pub struct Generation<'m> {
    model: &'m Model,
    params: SamplingParams,
    edit: Option<EditSource>,
    batch: usize,
    cond: Condition,
    lvl_pos: Tensor<3>,
    caches: Vec<KvCache>,
    /// The next scale's embedded input `[2B, pn², C]`; `None` once every scale is done.
    next_input: Option<Tensor<3>>,
    f_hat: Tensor<4>,
    rng: Rng,
    /// The codebook on the CPU `[V, Cvae]`: sampled tokens become code vectors here.
    codebook: Vec<f32>,
    si: usize,
}

/// The outcome of one scale.
#[derive(Clone, Debug)]
pub struct StepOutput {
    pub si: usize,
    pub patch: usize,
    /// `[B, pn²]` row-major.
    pub tokens: Vec<u32>,
}

impl<'m> Generation<'m> {
    /// Checks the request and prepares the class condition, caches and f̂ for one image per
    /// label (`labels` < num_classes, or `num_classes` for the null class).
    pub async fn new(
        model: &'m Model,
        labels: &[usize],
        params: &SamplingParams,
        edit: Option<EditSource>,
    ) -> Result<Self> {
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
        if let Some(edit) = &edit {
            edit.check(labels.len(), &cfg.patch_nums)?;
        }
        let device = model.device();
        let b = labels.len();
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
        let first = var.first_scale_input(&cond, &lvl_pos);
        Ok(Self {
            model,
            params: params.clone(),
            edit,
            batch: b,
            caches: var.new_caches(2 * b, &device),
            next_input: Some(first),
            cond,
            lvl_pos,
            f_hat: quant.zeros_fhat(b, &device),
            rng: Rng::new(params.seed),
            codebook: read_f32(quant.embedding.val()).await?,
            si: 0,
        })
    }

    /// f̂ so far, `[B, Cvae, N, N]`.
    pub fn f_hat(&self) -> &Tensor<4> {
        &self.f_hat
    }

    /// Number of scales done.
    pub fn scales_done(&self) -> usize {
        self.si
    }

    /// Runs the next scale; `None` when all scales are done.
    pub async fn step(&mut self) -> Result<Option<StepOutput>> {
        let Some(x) = self.next_input.take() else {
            return Ok(None);
        };
        let model = self.model;
        let cfg = &model.config;
        let (var, quant) = (&model.var, &model.vqvae.quantize);
        let (si, k, b) = (self.si, cfg.patch_nums.len(), self.batch);
        let pn = cfg.patch_nums[si];
        let l = pn * pn;
        let (vocab, cvae) = (cfg.vqvae.vocab_size, cfg.vqvae.z_channels);
        let p = &self.params;

        let logits = var.forward_scale(x, &self.cond, &mut self.caches); // [2B, l, V]
        let logits = read_f32(logits).await?;
        let t = cfg_strength(p.cfg, si, k);
        let ratio = si as f64 / (k - 1) as f64;
        let codebook = &self.codebook;
        let code = |i: usize| &codebook[i * cvae..(i + 1) * cvae];
        let keep = self.edit.as_ref().map(|e| (&e.tokens[si], &e.keep[si]));
        let mut tokens = vec![0u32; b * l];
        let mut h = vec![0f32; b * cvae * l]; // [B, Cvae, pn, pn]
        for row in 0..b {
            for j in 0..l {
                let at = |r: usize| (r * l + j) * vocab;
                let mut lg = logits[at(row)..at(row) + vocab].to_vec();
                cfg_mix(&mut lg, &logits[at(b + row)..at(b + row) + vocab], t);
                if p.temperature != 1.0 {
                    lg.iter_mut().for_each(|x| *x /= p.temperature);
                }
                filter_top_k_top_p(&mut lg, p.top_k, p.top_p);
                let idx = sample_index(&lg, &mut self.rng);
                let vector: Vec<f32> = if p.more_smooth {
                    let w = gumbel_soft_weights(&lg, ratio, smooth_tau(si, k), &mut self.rng);
                    soft_code(&w, codebook, cvae)
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
        let h = Tensor::<4>::from_data(TensorData::new(h, [b, cvae, pn, pn]), &model.device());
        self.f_hat = quant.accumulate(self.f_hat.clone(), h, si);
        if si + 1 < k {
            let next = quant.next_scale_input(self.f_hat.clone(), si + 1); // [B, pn², Cvae]
            let next = var.scale_input(si + 1, next, &self.lvl_pos);
            // Both CFG halves see the same f̂.
            self.next_input = Some(Tensor::cat(vec![next.clone(), next], 0));
        }
        self.si += 1;
        Ok(Some(StepOutput {
            si,
            patch: pn,
            tokens,
        }))
    }

    /// The images for the current f̂, `[B, 3, H, W]` in [0, 1] (final once every scale ran).
    pub fn image(&self) -> Tensor<4> {
        self.model.decode(self.f_hat.clone())
    }

    /// The latent side [`Self::scale_picture`] decodes f̂ at after scale `si` ([`Model::decode_at`]).
    pub fn picture_side(&self, si: usize, patch: usize) -> usize {
        match self.picture_for(si, patch) {
            ScalePicture::Final | ScalePicture::Full => self.model.config.latent_size(),
            ScalePicture::Reduced(side) => side,
        }
    }

    /// Which picture to show after scale `si` of size `patch` (the page's and the bench's
    /// preview policy): the final image at the last scale; f̂ decoded in full at every scale of
    /// one image from a model whose latent is at most [`PREVIEW_LATENT`] across (the shipped
    /// small models); otherwise f̂ decoded at the scale's own token-map size, at most
    /// [`PREVIEW_LATENT`] across ([`Self::preview`]), so that the previews together cost about
    /// one full decode instead of one per scale. Batches take the cheap previews even on small
    /// models: there the full decodes would be 70% of a run's arithmetic (the shipped model:
    /// 0.24 GFLOP a decode, six of them, against 0.61 for the transformer), and batches are
    /// where that arithmetic is paid per image; the grid's tiles are small anyway.
    pub fn picture_for(&self, si: usize, patch: usize) -> ScalePicture {
        let cfg = &self.model.config;
        if si + 1 == cfg.num_scales() {
            ScalePicture::Final
        } else if self.batch == 1 && previews_in_full(cfg) {
            ScalePicture::Full
        } else {
            ScalePicture::Reduced(patch.min(PREVIEW_LATENT))
        }
    }

    /// The picture [`Self::picture_for`] names, `[B, 3, H, W]` in [0, 1].
    pub fn scale_picture(&self, si: usize, patch: usize) -> Tensor<4> {
        self.preview(self.picture_side(si, patch))
    }

    /// A cheaper look at f̂ so far ([`Model::decode_at`]): decoded at `side`² latent positions.
    pub fn preview(&self, side: usize) -> Tensor<4> {
        self.model.decode_at(self.f_hat.clone(), side)
    }
}

/// Generates one image per label and returns them as `[B, 3, H, W]` in [0, 1].
///
/// `on_scale` runs after every scale; returning `ControlFlow::Break` cancels the run
/// (→ [`VarError::Cancelled`]) before the next scale starts.
pub async fn generate(
    model: &Model,
    labels: &[usize],
    params: &SamplingParams,
    edit: Option<EditSource>,
    mut on_scale: impl FnMut(&ScaleStep) -> ControlFlow<()>,
) -> Result<Tensor<4>> {
    let mut run = Generation::new(model, labels, params, edit).await?;
    while let Some(out) = run.step().await? {
        let step = ScaleStep {
            si: out.si,
            patch: out.patch,
            tokens: &out.tokens,
            f_hat: run.f_hat(),
        };
        if on_scale(&step).is_break() {
            return Err(VarError::Cancelled);
        }
    }
    Ok(run.image())
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
    /// The reference's per-scale keep masks (`var-reference.md` §4) from a keep-mask on the
    /// finest token grid (`side`², row-major, 1 = keep the source): at each scale the mask is
    /// resized to pn x pn (bilinear, `align_corners = false`) and kept where > 0.5; scales with
    /// pn² ≤ 3 are kept whole.
    pub fn keep_masks(mask: &[f32], side: usize, patch_nums: &[usize]) -> Result<Vec<Vec<bool>>> {
        if side == 0 || mask.len() != side * side {
            return Err(VarError::InvalidArgument(format!(
                "the mask has {} values; the finest token grid needs {side}x{side}",
                mask.len()
            )));
        }
        // PyTorch's source coordinate for linear modes without corner alignment, clamped at 0.
        let taps = |pn: usize| -> Vec<(usize, usize, f32)> {
            (0..pn)
                .map(|o| {
                    let src = ((o as f32 + 0.5) * side as f32 / pn as f32 - 0.5).max(0.0);
                    let i0 = (src.floor() as usize).min(side - 1);
                    let i1 = (i0 + 1).min(side - 1);
                    (i0, i1, src - i0 as f32)
                })
                .collect()
        };
        Ok(patch_nums
            .iter()
            .map(|&pn| {
                if pn * pn <= 3 {
                    return vec![true; pn * pn];
                }
                let t = taps(pn);
                let mut out = Vec::with_capacity(pn * pn);
                for &(y0, y1, ly) in &t {
                    for &(x0, x1, lx) in &t {
                        let at = |y: usize, x: usize| mask[y * side + x];
                        let top = at(y0, x0) * (1.0 - lx) + at(y0, x1) * lx;
                        let bottom = at(y1, x0) * (1.0 - lx) + at(y1, x1) * lx;
                        out.push(top * (1.0 - ly) + bottom * ly > 0.5);
                    }
                }
                out
            })
            .collect())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_masks_follow_the_reference_resize() {
        // Keep the left half of a 4x4 grid.
        let mask: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
        let m = EditSource::keep_masks(&mask, 4, &[1, 2, 3, 4]).unwrap();
        assert_eq!(m[0], vec![true], "pn² ≤ 3 is kept whole");
        assert_eq!(m[1], vec![true, false, true, false]);
        // 4 → 3: source x = 0.1667, 1.5, 2.8333 → values 1, 0.5 (not > 0.5), 0.
        assert_eq!(&m[2][..3], &[true, false, false]);
        let full: Vec<bool> = mask.iter().map(|&v| v > 0.5).collect();
        assert_eq!(m[3], full, "the finest scale is the mask itself");
        assert!(EditSource::keep_masks(&mask, 3, &[1]).is_err());
    }
}
