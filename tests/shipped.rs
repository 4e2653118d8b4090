//! The shipped Fashion-MNIST model (`www/models/fashion-mnist/`): it fits the download budget,
//! loads, and generates garments that the project's own classifier recognises.
#![cfg(not(target_arch = "wasm32"))]

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::Device;
use var_web::train::classifier::{Classifier, grey_input};
use var_web::weights::format::load_model_dir;
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
    let model = load_model_dir(&dir, &Device::flex()).unwrap();
    assert_eq!(model.config.class_names, FASHION_MNIST_CLASSES.to_vec());
    assert_eq!(model.config.image_size, 32);
}

#[test]
fn shipped_model_generates_recognisable_garments() {
    let device = Device::flex();
    let model = load_model_dir(&repo(var_web::DEFAULT_MODEL_DIR), &device).unwrap();
    let classifier = Classifier::load_dir(&repo("models/fashion-classifier"), &device).unwrap();
    let params = model.config.sampling.params(11);
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
        var_web::generate::read_f32(t).await
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
        assert!(
            centre > 0.1,
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
