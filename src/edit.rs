//! Zero-shot in-painting, out-painting and class-conditional editing (paper §4, reference
//! `var-reference.md` §4): the source image is encoded into its token maps (`img_to_idxBl`),
//! and the one generation loop ([`crate::generate::Generation`]) keeps the source's tokens
//! wherever the per-scale keep-mask says so.
//!
//! A person paints what to *generate*, in image pixels; the reference's keep-mask lives on the
//! finest token grid. [`keep_grid`] bridges the two: a token is regenerated when the brush
//! touched any pixel of its patch, so nothing painted survives from the source.

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};

use crate::config::SamplingParams;
use crate::error::{Result, VarError};
use crate::generate::{EditSource, ScaleStep, generate};
use crate::model::Model;
use crate::readback::read_i64;

/// A source image as the model sees it: its token maps and the f̂ they sum to.
pub struct EncodedImage {
    /// Per scale, `[B·pn²]` row-major.
    pub tokens: Vec<Vec<u32>>,
    /// `[B, Cvae, N, N]`.
    pub f_hat: Tensor<4>,
}

impl EncodedImage {
    /// `img_to_idxBl` on images `[B, 3, H, W]` in [0, 1] at the model's resolution.
    pub async fn encode(model: &Model, images01: Tensor<4>) -> Result<Self> {
        let [_, c, h, w] = images01.dims();
        let size = model.config.image_size;
        if c != 3 || h != size || w != size {
            return Err(VarError::InvalidArgument(format!(
                "the source image is {c}x{h}x{w}; this model encodes 3x{size}x{size}"
            )));
        }
        let (tokens, f_hat) = model.vqvae.img_to_tokens(images01 * 2.0 - 1.0);
        let mut out = Vec::with_capacity(tokens.len());
        for t in tokens {
            out.push(read_i64(t).await?.into_iter().map(|v| v as u32).collect());
        }
        Ok(Self { tokens: out, f_hat })
    }

    /// The source through the VQ-VAE (encoder → tokens → decoder), `[B, 3, H, W]` in [0, 1]:
    /// what the kept regions of an edit look like.
    pub fn reconstruction(&self, model: &Model) -> Tensor<4> {
        (model.vqvae.fhat_to_img(self.f_hat.clone()) + 1.0) * 0.5
    }

    /// The edit that keeps these tokens where `keep` (the finest token grid, 1 = keep) says
    /// so, resized per scale as the reference does.
    pub fn edit_source(&self, model: &Model, keep: &[f32]) -> Result<EditSource> {
        let patch_nums = &model.config.patch_nums;
        let side = *patch_nums.last().expect("a validated config has scales");
        Ok(EditSource {
            tokens: self.tokens.clone(),
            keep: EditSource::keep_masks(keep, side, patch_nums)?,
        })
    }
}

/// The keep-mask on the finest token grid (`side`², 1 = keep) from a mask painted on the
/// image (`size`², true = generate): a token is generated when any pixel of its
/// `size/side`-square patch is.
pub fn keep_grid(generate: &[bool], size: usize, side: usize) -> Result<Vec<f32>> {
    if generate.len() != size * size {
        return Err(VarError::InvalidArgument(format!(
            "the mask has {} pixels; this model's images are {size}x{size}",
            generate.len()
        )));
    }
    if side == 0 || !size.is_multiple_of(side) {
        return Err(VarError::InvalidArgument(format!(
            "{size} px images do not split into {side}x{side} token patches"
        )));
    }
    let patch = size / side;
    Ok((0..side * side)
        .map(|t| {
            let (ty, tx) = (t / side, t % side);
            let touched = (0..patch).any(|y| {
                let row = (ty * patch + y) * size + tx * patch;
                generate[row..row + patch].iter().any(|&g| g)
            });
            if touched { 0.0 } else { 1.0 }
        })
        .collect())
}

/// What a painted mask asks for, in one sentence, or an error when it asks for nothing:
/// an empty mask would only reproduce the source's reconstruction.
pub fn describe_mask(keep: &[f32]) -> Result<String> {
    let generated = keep.iter().filter(|&&k| k < 0.5).count();
    if generated == 0 {
        return Err(VarError::InvalidArgument(
            "the mask is empty: paint the region to generate".into(),
        ));
    }
    Ok(if generated == keep.len() {
        "the mask covers the whole image: only the coarsest scales (pn² ≤ 3) come from the source"
            .into()
    } else {
        format!(
            "{generated} of {} tokens on the finest grid are generated",
            keep.len()
        )
    })
}

/// An edit ready for the generation loop: what to keep of the source, the source as the
/// model sees it, and one sentence on the mask.
pub struct PreparedEdit {
    pub edit: EditSource,
    pub source: EncodedImage,
    /// [`describe_mask`]'s sentence.
    pub description: String,
}

/// Prepares the edit of one picture (RGB8, the model's size²) where `generate_px` (one flag
/// per pixel) is set: the mask on the finest token grid ([`keep_grid`], an empty one
/// refused by [`describe_mask`]), the source encoded into its token maps, and the per-scale
/// keep masks. The CLI's [`inpaint`] and the page run this same pipeline.
pub async fn prepare_edit(
    model: &Model,
    source_rgb: &[u8],
    generate_px: &[bool],
) -> Result<PreparedEdit> {
    let size = model.config.image_size;
    let side = *model
        .config
        .patch_nums
        .last()
        .expect("a validated config has scales");
    let keep = keep_grid(generate_px, size, side)?;
    let description = describe_mask(&keep)?;
    let source = EncodedImage::encode(model, rgb8_to_tensor(model, source_rgb)?).await?;
    let edit = source.edit_source(model, &keep)?;
    Ok(PreparedEdit {
        edit,
        source,
        description,
    })
}

/// A finished in-painting: every scale's tokens, the image and the encoded source.
pub struct Inpainting {
    /// Per scale, `[pn²]` row-major.
    pub tokens: Vec<Vec<u32>>,
    /// `[1, 3, H, W]` in [0, 1].
    pub image: Tensor<4>,
    pub source: EncodedImage,
}

/// In-paints one picture (RGB8, the model's size²): where `generate` (one flag per pixel) is
/// set, tokens are generated under `label` (`num_classes` = the null class); elsewhere the
/// source's tokens are kept. An empty mask is refused ([`describe_mask`]). `on_scale` sees
/// every scale, as in [`generate`].
pub async fn inpaint(
    model: &Model,
    source_rgb: &[u8],
    generate_px: &[bool],
    label: usize,
    params: &SamplingParams,
    mut on_scale: impl FnMut(&ScaleStep) -> ControlFlow<()>,
) -> Result<Inpainting> {
    let PreparedEdit { edit, source, .. } = prepare_edit(model, source_rgb, generate_px).await?;
    let mut tokens = Vec::with_capacity(model.config.num_scales());
    let image = generate(model, &[label], params, Some(edit), |s| {
        tokens.push(s.tokens.to_vec());
        on_scale(s)
    })
    .await?;
    Ok(Inpainting {
        tokens,
        image,
        source,
    })
}

/// RGB8 pixels (`size`²·3, row-major) → `[1, 3, size, size]` in [0, 1] on the model's device.
pub fn rgb8_to_tensor(model: &Model, rgb: &[u8]) -> Result<Tensor<4>> {
    let size = model.config.image_size;
    let plane = size * size;
    if rgb.len() != plane * 3 {
        return Err(VarError::InvalidArgument(format!(
            "the source image has {} bytes; {size}x{size} RGB needs {}",
            rgb.len(),
            plane * 3
        )));
    }
    let mut chw = vec![0f32; plane * 3];
    for (p, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * plane + p] = px[c] as f32 / 255.0;
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(chw, [1, 3, size, size]),
        &model.device(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_generated_when_any_of_its_pixels_is_painted() {
        // 8 px image, 2x2 tokens of 4x4 px; one painted pixel in the top-right patch.
        let mut painted = vec![false; 64];
        painted[3 * 8 + 7] = true;
        assert_eq!(keep_grid(&painted, 8, 2).unwrap(), vec![1.0, 0.0, 1.0, 1.0]);
        assert!(
            keep_grid(&painted, 8, 3).is_err(),
            "8 px does not split in 3"
        );
        assert!(keep_grid(&painted[1..], 8, 2).is_err(), "wrong pixel count");
    }

    #[test]
    fn empty_and_full_masks_are_explained() {
        assert!(
            describe_mask(&[1.0; 4])
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(describe_mask(&[0.0; 4]).unwrap().contains("whole image"));
        assert!(
            describe_mask(&[0.0, 1.0, 1.0, 1.0])
                .unwrap()
                .starts_with("1 of 4")
        );
    }
}
