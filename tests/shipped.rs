//! The shipped Fashion-MNIST model (`www/models/fashion-mnist/`): it fits the download budget,
//! loads, and generates garments that the project's own classifier recognises.
#![cfg(not(target_arch = "wasm32"))]

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::Device;
use var_web::modeldir::{self, LoadOptions};
use var_web::train::classifier::{Classifier, grey_input};
use var_web::{FASHION_MNIST_CLASSES, Model, generate};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn shipped_model_is_small_and_names_its_classes() {
    let dir = repo(var_web::DEFAULT_MODEL_DIR);
    let total: u64 = ["config.json", "vqvae.safetensors", "var.safetensors"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum();
    assert!(
        total < 10 * 1024 * 1024,
        "{total} bytes is over the 10 MB budget"
    );
    let model = modeldir::load(&dir, &Device::flex(), &LoadOptions::default()).unwrap();
    assert_eq!(model.config.class_names, FASHION_MNIST_CLASSES.to_vec());
    assert_eq!(model.config.image_size, 32);
}

#[test]
fn shipped_model_generates_recognisable_garments() {
    let device = Device::flex();
    let model = modeldir::load(
        &repo(var_web::DEFAULT_MODEL_DIR),
        &device,
        &LoadOptions::default(),
    )
    .unwrap();
    let classifier = Classifier::load_dir(&repo("models/fashion-classifier"), &device).unwrap();
    let params = model.config.sampling.with_seed(11);
    let per_class = 5;
    let labels: Vec<usize> = (0..10)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let images = pollster::block_on(async {
        let t = generate(
            &model,
            &labels,
            &params,
            None,
            |_| ControlFlow::Continue(()),
        )
        .await?;
        var_web::readback::read_f32(t).await
    })
    .unwrap();
    let size = model.config.image_size;
    let plane = size * size;
    for (b, label) in labels.iter().enumerate() {
        let img = &images[b * 3 * plane..(b + 1) * 3 * plane];
        // Fashion-MNIST garments sit on a black background: the 2-pixel padding ring is dark
        // and the centre carries the garment.
        let (mut border, mut nb, mut centre, mut nc) = (0f32, 0, 0f32, 0);
        for y in 0..size {
            for x in 0..size {
                let v = img[y * size + x];
                if y < 2 || x < 2 || y >= size - 2 || x >= size - 2 {
                    border += v;
                    nb += 1;
                } else if (8..24).contains(&y) && (8..24).contains(&x) {
                    centre += v;
                    nc += 1;
                }
            }
        }
        let (border, centre) = (border / nb as f32, centre / nc as f32);
        assert!(
            border < 0.1,
            "sample {b} (class {label}): border mean {border}"
        );
        // Not blank. Sandals are mostly straps: 7.7% of the real test sandals have a centre
        // mean under 0.1, and the darkest real test image of any class has 0.031.
        assert!(
            centre > 0.03,
            "sample {b} (class {label}): centre mean {centre}"
        );
    }
    let (_, pred) = classifier
        .classify(grey_input(&images, labels.len(), size, &device))
        .unwrap();
    let hits = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(
        hits * 100 >= 80 * labels.len(),
        "only {hits} of {} samples were classified as their class",
        labels.len()
    );
    let rgb = Model::to_rgb8(&images, labels.len(), size);
    assert!(rgb.iter().all(|i| i.len() == plane * 3));
}

/// One generation of every class (the model's own sampling defaults, seed 5), stopped after
/// the scale whose token map is 4x4, where the page shows a preview: returns (the full decode of
/// f̂ at that point, 32 px, and its preview at the token map's size, 16 px), each `[3, H, W]`
/// row-major in [0, 1].
fn images_and_previews_at_4x4(model: &Model) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let labels: Vec<usize> = (0..model.config.var.num_classes).collect();
    let params = model.config.sampling.with_seed(5);
    let mut run = pollster::block_on(var_web::generate::Generation::new(
        model, &labels, &params, None,
    ))
    .unwrap();
    while pollster::block_on(run.step()).unwrap().unwrap().patch != 4 {}
    let full = run.image();
    assert_eq!(
        run.preview(8).dims(),
        full.dims(),
        "no preview at the full latent"
    );
    let preview = run.preview(4);
    assert_eq!(preview.dims(), [labels.len(), 3, 16, 16]);
    let read = |t, plane: usize| -> Vec<Vec<f32>> {
        pollster::block_on(var_web::readback::read_f32(t))
            .unwrap()
            .chunks(plane)
            .map(<[f32]>::to_vec)
            .collect()
    };
    (read(full, 3 * 32 * 32), read(preview, 3 * 16 * 16))
}

#[test]
fn a_preview_is_a_smaller_decode_of_the_same_picture() {
    let model = modeldir::load(
        &repo(var_web::DEFAULT_MODEL_DIR),
        &Device::flex(),
        &LoadOptions::default(),
    )
    .unwrap();
    // 2x2 average of a [3, 32, 32] image.
    let half = |img: &[f32]| -> Vec<f32> {
        (0..3 * 16 * 16)
            .map(|i| {
                let (c, y, x) = (i / 256, i / 16 % 16, i % 16);
                let at = |dy: usize, dx: usize| img[c * 1024 + (2 * y + dy) * 32 + 2 * x + dx];
                (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0
            })
            .collect()
    };
    let mad = |a: &[f32], b: &[f32]| {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    };
    // One sample of each class, at the 4x4 scale where the page shows this preview instead of
    // the full decode. The decoder renders an averaged latent blockier and darker than a full
    // one (measured: about 0.6 of the way from its own picture to a typical other one), so the
    // check is the one that a wrong preview (another sample's f̂, a region of the wrong size)
    // fails: every preview is nearer to its own full decode (halved) than to the
    // other classes' on average, and clearly so summed over the ten.
    let (images, previews) = images_and_previews_at_4x4(&model);
    let halved: Vec<Vec<f32>> = images.iter().map(|f| half(f)).collect();
    let (mut own_sum, mut other_sum) = (0.0, 0.0);
    for (i, preview) in previews.iter().enumerate() {
        assert!(preview.iter().all(|v| (0.0..=1.0).contains(v)));
        let own = mad(preview, &halved[i]);
        let others: Vec<f32> = (0..halved.len())
            .filter(|&j| j != i)
            .map(|j| mad(preview, &halved[j]))
            .collect();
        let other = others.iter().sum::<f32>() / others.len() as f32;
        eprintln!("class {i}: {own:.3} to its own picture, {other:.3} to the others' on average");
        assert!(
            own < other,
            "class {i}'s preview is no nearer to its own picture ({own:.3}) than to the others' ({other:.3})"
        );
        own_sum += own;
        other_sum += other;
    }
    eprintln!("own / others, summed: {:.3}", own_sum / other_sum);
    assert!(own_sum < 0.7 * other_sum);
}
