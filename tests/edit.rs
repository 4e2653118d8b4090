//! In-painting, out-painting and editing on the shipped model (reference §4): kept tokens are
//! the source's exactly, an all-keep mask is the encoder's reconstruction, an all-generate
//! mask keeps only the smallest scales, and bad masks are refused with a sentence.
#![cfg(not(target_arch = "wasm32"))]

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use var_web::edit::{EncodedImage, describe_mask, inpaint, keep_grid};
use var_web::modeldir::{self, LoadOptions};
use var_web::readback::read_f32;
use var_web::{EditSource, Model, SamplingParams, generate};

fn shipped() -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(var_web::DEFAULT_MODEL_DIR);
    modeldir::load(&dir, &Device::flex(), &LoadOptions::default()).unwrap()
}

/// A source image: a generated ankle boot (class 9), `[1, 3, 32, 32]` in [0, 1].
fn source(model: &Model) -> Tensor<4> {
    let params = model.config.sampling.with_seed(3);
    pollster::block_on(generate(model, &[9], &params, None, |_| {
        ControlFlow::Continue(())
    }))
    .unwrap()
}

/// Runs an edit and returns every scale's tokens and the final image.
fn run_edit(
    model: &Model,
    label: usize,
    edit: EditSource,
    params: &SamplingParams,
) -> (Vec<Vec<u32>>, Vec<f32>) {
    let mut tokens = Vec::new();
    let image = pollster::block_on(generate(model, &[label], params, Some(edit), |s| {
        tokens.push(s.tokens.to_vec());
        ControlFlow::Continue(())
    }))
    .unwrap();
    (tokens, pollster::block_on(read_f32(image)).unwrap())
}

/// A painted rectangle (true = generate) on a `size`² image.
fn rectangle(size: usize, y: std::ops::Range<usize>, x: std::ops::Range<usize>) -> Vec<bool> {
    (0..size * size)
        .map(|p| y.contains(&(p / size)) && x.contains(&(p % size)))
        .collect()
}

#[test]
fn kept_tokens_are_the_source_tokens_at_every_scale() {
    let model = shipped();
    let src = pollster::block_on(EncodedImage::encode(&model, source(&model))).unwrap();
    // In-paint the centre 16x16 px (the middle 4x4 tokens of the 8x8 grid).
    let keep = keep_grid(&rectangle(32, 8..24, 8..24), 32, 8).unwrap();
    assert_eq!(keep.iter().filter(|&&k| k == 0.0).count(), 16);
    let edit = src.edit_source(&model, &keep).unwrap();
    let params = model.config.sampling.with_seed(5);
    let null_class = model.config.var.num_classes;
    let (tokens, _) = run_edit(&model, null_class, edit.clone(), &params);
    let mut kept_total = 0;
    for (si, got) in tokens.iter().enumerate() {
        for (j, &keep) in edit.keep[si].iter().enumerate() {
            if keep {
                kept_total += 1;
                assert_eq!(got[j], src.tokens[si][j], "scale {si} token {j} was kept");
            }
        }
    }
    // Scales 1x1, 2x2 whole, and the outer ring of every larger scale.
    assert!(kept_total > 1 + 4 + 48, "{kept_total} kept tokens");
    let generated_differ = tokens[5]
        .iter()
        .zip(&src.tokens[5])
        .zip(&edit.keep[5])
        .filter(|((a, b), k)| !**k && a != b)
        .count();
    assert!(
        generated_differ > 0,
        "the in-painted tokens are sampled, not copied"
    );
}

#[test]
fn an_all_keep_mask_reproduces_the_encoder_reconstruction() {
    let model = shipped();
    let src = pollster::block_on(EncodedImage::encode(&model, source(&model))).unwrap();
    let edit = src.edit_source(&model, &[1.0; 64]).unwrap();
    let (tokens, image) = run_edit(&model, 4, edit, &model.config.sampling.with_seed(0));
    assert_eq!(tokens, src.tokens);
    let want = pollster::block_on(read_f32(src.reconstruction(&model))).unwrap();
    let worst = image
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "largest difference {worst}");
    assert!(
        describe_mask(&[1.0; 64]).is_err(),
        "the CLI and the page refuse an empty mask"
    );
}

#[test]
fn an_all_generate_mask_keeps_only_the_smallest_scales() {
    let model = shipped();
    let src = pollster::block_on(EncodedImage::encode(&model, source(&model))).unwrap();
    let keep = keep_grid(&[true; 32 * 32], 32, 8).unwrap();
    assert!(describe_mask(&keep).unwrap().contains("whole image"));
    let edit = src.edit_source(&model, &keep).unwrap();
    // A class-conditional edit turns the boot into a trouser (class 1).
    let (tokens, _) = run_edit(&model, 1, edit.clone(), &model.config.sampling.with_seed(1));
    for (si, &pn) in model.config.patch_nums.iter().enumerate() {
        if pn * pn <= 3 {
            assert!(edit.keep[si].iter().all(|&k| k));
            assert_eq!(tokens[si], src.tokens[si], "scale {si} is kept whole");
        } else {
            assert!(edit.keep[si].iter().all(|&k| !k), "scale {si} is generated");
            let same = tokens[si]
                .iter()
                .zip(&src.tokens[si])
                .filter(|(a, b)| a == b)
                .count();
            assert!(
                same * 2 < pn * pn,
                "scale {si}: {same} of {} tokens equal the source",
                pn * pn
            );
        }
    }
}

#[test]
fn bad_masks_and_sources_are_refused_with_a_sentence() {
    let model = shipped();
    let src = pollster::block_on(EncodedImage::encode(&model, source(&model))).unwrap();
    let e = src.edit_source(&model, &[1.0; 63]).err().unwrap();
    assert!(e.to_string().contains("8x8"), "{e}");
    let e = keep_grid(&[true; 31 * 31], 32, 8).unwrap_err();
    assert!(e.to_string().contains("32x32"), "{e}");
    let wrong = Tensor::<4>::zeros([1, 3, 28, 28], &model.device());
    let e = pollster::block_on(EncodedImage::encode(&model, wrong))
        .err()
        .unwrap();
    assert!(e.to_string().contains("3x32x32"), "{e}");
    // An edit source for one image cannot drive a batch of two.
    let edit = src.edit_source(&model, &[0.0; 64]).unwrap();
    let e = pollster::block_on(generate(
        &model,
        &[0, 1],
        &model.config.sampling.with_seed(0),
        Some(edit),
        |_| ControlFlow::Continue(()),
    ))
    .err()
    .unwrap();
    assert!(e.to_string().contains("edit source"), "{e}");
}

/// The in-painting that `tests/web.rs` repeats in the browser: a stored source image, a
/// rectangle, greedy sampling. Its tokens and pixels are `tests/fixtures/inpaint_shipped.json`;
/// `VAR_BLESS=1 cargo test --test edit` rewrites the file after the shipped model changes.
#[test]
fn native_inpainting_matches_the_browser_fixture() {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Fixture {
        source_rgb: Vec<u8>,
        generate_rect: [usize; 4],
        label: usize,
        seed: u64,
        tokens: Vec<Vec<u32>>,
        image_rgb: Vec<u8>,
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inpaint_shipped.json");
    let bless = std::env::var_os("VAR_BLESS").is_some();
    let model = shipped();
    let stored: Option<Fixture> = std::fs::read_to_string(&path)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    let (source_rgb, rect, label, seed) = match &stored {
        Some(f) => (f.source_rgb.clone(), f.generate_rect, f.label, f.seed),
        None => {
            let pixels = pollster::block_on(read_f32(source(&model))).unwrap();
            (
                Model::to_rgb8(&pixels, 1, 32).remove(0),
                [4, 16, 4, 28],
                10,
                0,
            )
        }
    };
    let [y0, y1, x0, x1] = rect;
    let params = SamplingParams {
        top_k: 1,
        ..model.config.sampling.with_seed(seed)
    };
    let done = pollster::block_on(inpaint(
        &model,
        &source_rgb,
        &rectangle(32, y0..y1, x0..x1),
        label,
        &params,
        |_| ControlFlow::Continue(()),
    ))
    .unwrap();
    let tokens = done.tokens;
    let pixels = pollster::block_on(read_f32(done.image)).unwrap();
    let image_rgb = Model::to_rgb8(&pixels, 1, 32).remove(0);
    let now = Fixture {
        source_rgb,
        generate_rect: rect,
        label,
        seed,
        tokens,
        image_rgb,
    };
    if bless {
        std::fs::write(&path, serde_json::to_string(&now).unwrap()).unwrap();
        return;
    }
    let stored = stored.expect("tests/fixtures/inpaint_shipped.json (VAR_BLESS=1 writes it)");
    assert_eq!(
        now.tokens, stored.tokens,
        "run with VAR_BLESS=1 after changing the shipped model"
    );
    let worst = now
        .image_rgb
        .iter()
        .zip(&stored.image_rgb)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "pixels differ by up to {worst} levels");
}

/// In-painting real 28x28 test images in their own geometry, without keep-original: beyond
/// 3 px from the mask the result is the source as the VQ-VAE reconstructs it, so it may differ
/// from the source by about what the reconstruction does, and no more.
#[test]
fn in_painting_a_fashion_image_keeps_what_the_vqvae_reconstructs() {
    use var_web::picture::{fit_rgb, unfit_rgb};
    use var_web::train::data::{DEFAULT_DIR, FashionMnist, Split};
    let model = shipped();
    let rule = model.config.fit_rule();
    let size = model.config.image_size;
    let data = FashionMnist::load(std::path::Path::new(DEFAULT_DIR), Split::Test)
        .expect("Fashion-MNIST is not installed: run ./scripts/setup.sh")
        .first(10);
    // The mask: source pixels 9..19 both ways; the model's pixels 11..21.
    let inside = |x: usize, y: usize| (9..19).contains(&x) && (9..19).contains(&y);
    let far = |x: usize, y: usize| x + 3 <= 9 || x >= 19 + 2 || y + 3 <= 9 || y >= 19 + 2;
    let border = (size - 28) / 2;
    let generate_px: Vec<bool> = (0..size * size)
        .map(|p| {
            let (x, y) = (p % size, p / size);
            x >= border && y >= border && inside(x - border, y - border)
        })
        .collect();
    let (mut edit_err, mut recon_err, mut n) = (0f64, 0f64, 0usize);
    for i in 0..data.len() {
        let src = data.image(i);
        let rgb = fit_rgb(&src, size, rule);
        let params = model.config.sampling.with_seed(i as u64);
        let done = pollster::block_on(inpaint(&model, &rgb, &generate_px, 10, &params, |_| {
            ControlFlow::Continue(())
        }))
        .unwrap();
        let back = |t| {
            let px = Model::to_rgb8(&pollster::block_on(read_f32(t)).unwrap(), 1, size).remove(0);
            unfit_rgb(&px, size, rule, &src.to_rgb8())
        };
        let (edited, recon) = (back(done.image), back(done.source.reconstruction(&model)));
        assert_eq!(edited.dimensions(), (28, 28), "the source's size");
        let source = src.to_rgb8();
        for (x, y, s) in source.enumerate_pixels() {
            if far(x as usize, y as usize) {
                let d = |p: &image::Rgb<u8>| (p.0[0] as f64 - s.0[0] as f64).abs() / 255.0;
                edit_err += d(edited.get_pixel(x, y));
                recon_err += d(recon.get_pixel(x, y));
                n += 1;
            }
        }
    }
    let (edit_err, recon_err) = (edit_err / n as f64, recon_err / n as f64);
    eprintln!(
        "beyond 3 px of the mask, mean |result - source| {:.4} against the reconstruction's {:.4} ({n} pixels)",
        edit_err, recon_err
    );
    assert!(
        edit_err <= 1.5 * recon_err,
        "the kept region drifts beyond the VQ-VAE's own error: {edit_err} against {recon_err}"
    );
}
