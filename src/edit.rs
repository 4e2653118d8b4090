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
        model.decode(self.f_hat.clone())
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

/// How far, in pixels, [`keep_original`] blends the result into the source beyond the
/// generated region: a sixteenth of the image (2 px at 32 px, 16 at 256), at least 1.
pub fn feather_px(size: usize) -> usize {
    (size / 16).max(1)
}

/// "Keep the original pixels outside the mask", as in-painting tools offer it: the source
/// (`channels` bytes a pixel, 3 or 4, `size`² of them) where nothing was generated, the
/// result where `generate_px` is set, and between them a seam `feather` px wide where the
/// result's weight falls linearly with the distance to the generated region (1 − d/(f + 1)),
/// so that every pixel more than `feather` px away is the source's, byte for byte. The
/// reference returns the decoder's whole image instead, which is why this is an option.
pub fn keep_original(
    source: &[u8],
    result: &[u8],
    generate_px: &[bool],
    size: usize,
    channels: usize,
    feather: usize,
) -> Result<Vec<u8>> {
    let plane = size * size;
    if generate_px.len() != plane
        || source.len() != plane * channels
        || result.len() != source.len()
    {
        return Err(VarError::InvalidArgument(format!(
            "keeping the original needs a {size}x{size} source, result and mask; got {}, {} and {} values",
            source.len(),
            result.len(),
            generate_px.len()
        )));
    }
    let reach = feather as isize;
    let weight = |x: usize, y: usize| -> f32 {
        if generate_px[y * size + x] {
            return 1.0;
        }
        // The nearest generated pixel within the seam (a window search: (2f + 1)² a pixel).
        let mut nearest = f32::INFINITY;
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let (gx, gy) = (x as isize + dx, y as isize + dy);
                if gx < 0 || gy < 0 || gx >= size as isize || gy >= size as isize {
                    continue;
                }
                if generate_px[gy as usize * size + gx as usize] {
                    nearest = nearest.min(((dx * dx + dy * dy) as f32).sqrt());
                }
            }
        }
        (1.0 - nearest / (feather as f32 + 1.0)).max(0.0)
    };
    let mut out = source.to_vec();
    for y in 0..size {
        for x in 0..size {
            let w = weight(x, y);
            if w == 0.0 {
                continue;
            }
            let p = (y * size + x) * channels;
            for c in p..p + channels {
                out[c] = (w * result[c] as f32 + (1.0 - w) * source[c] as f32).round() as u8;
            }
        }
    }
    Ok(out)
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
    fn keeping_the_original_is_the_source_beyond_the_seam_and_the_result_inside() {
        // 16 px, a 4x4 generated square at (6..10, 6..10); source 10, result 250 everywhere.
        let size = 16;
        let inside = |x: usize, y: usize| (6..10).contains(&x) && (6..10).contains(&y);
        let mask: Vec<bool> = (0..size * size)
            .map(|p| inside(p % size, p / size))
            .collect();
        let (source, result) = (vec![10u8; size * size * 4], vec![250u8; size * size * 4]);
        let out = keep_original(&source, &result, &mask, size, 4, 2).unwrap();
        let at = |x: usize, y: usize| out[(y * size + x) * 4];
        assert_eq!(at(7, 7), 250, "generated pixels are the result's");
        assert_eq!(at(10, 7), 170, "1 px out: weight 2/3");
        assert_eq!(at(11, 7), 90, "2 px out: weight 1/3");
        for p in 0..size * size {
            let (x, y) = (p % size, p / size);
            let gap = |a: usize| if a < 6 { 6 - a } else { a.saturating_sub(9) };
            if gap(x).max(gap(y)) > 2 {
                assert_eq!(at(x, y), 10, "({x}, {y}) is beyond the seam: the source's");
            }
            assert!(at(x, y) >= 10 && at(x, y) <= 250);
        }
        // The seam falls with the distance: a corner pixel 1 px out diagonally (√2) is further
        // than one 1 px out straight.
        assert!(at(10, 10) < at(10, 9));
        assert!(keep_original(&source, &result[4..], &mask, size, 4, 2).is_err());
        assert!(keep_original(&source, &result, &mask[1..], size, 4, 2).is_err());
        assert_eq!(feather_px(32), 2);
        assert_eq!(feather_px(256), 16);
        assert_eq!(feather_px(8), 1);
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
