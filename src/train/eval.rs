//! `var eval`: how good a trained Fashion-MNIST model is, measured by the project's classifier.
//!
//! - VQ-VAE reconstruction PSNR on the test set;
//! - class adherence: the share of generated samples that the classifier assigns to the
//!   requested class, per class and overall;
//! - the Fréchet distance between generated and test images in the classifier's feature space,
//!   beside the same distance between as many training images and the test set (the floor a
//!   perfect generator would reach at this sample size);
//! - the tokenizer's ceiling: the same scores for training images through the VQ-VAE alone
//!   (every token right), which no transformer on this tokenizer can beat;
//! - a classes x seeds sample grid.

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::Device;
use nalgebra::{DMatrix, DVector, SymmetricEigen};
use serde::Serialize;

use super::classifier::{Classifier, FEATURES, classify_dataset, grey_input};
use super::data::{FashionMnist, ImageSet, Split, fashion_mnist_fit};
use super::vqvae::test_psnr;
use crate::config::SamplingParams;
use crate::error::{Result, VarError};
use crate::generate::generate;
use crate::model::Model;
use crate::modeldir::{self, LoadOptions};
use crate::readback::read_f32;
use crate::rng::Rng;

/// What `var eval` does.
#[derive(Clone, Debug, clap::Args)]
pub struct Evaluation {
    /// Model directory (default: the shipped www/models/fashion-mnist).
    #[arg(long, default_value = crate::modeldir::DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Directory with classifier.safetensors (the `checkpoint/` of `var train classifier`).
    #[arg(long)]
    pub classifier: PathBuf,
    /// Folder with Fashion-MNIST's gzip IDX files.
    #[arg(long, default_value = super::data::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Samples generated per class.
    #[arg(long, default_value_t = 100)]
    pub per_class: usize,
    /// Test images whose reconstruction PSNR is measured.
    #[arg(long, default_value_t = 10_000)]
    pub psnr_images: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classifier-free guidance (default: the model's recommendation, as in the page).
    #[arg(long)]
    pub cfg: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Output directory: eval.json and grid.png (10 samples per class).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub sampling: SamplingParams,
    pub samples_per_class: usize,
    pub psnr_db: f64,
    pub psnr_images: usize,
    pub classifier_test_accuracy: f64,
    /// The classifier's accuracy per class on real test images: the ceiling its judgement
    /// puts on class adherence (shirts are often taken for T-shirts, pullovers or coats).
    pub classifier_class_accuracy: Vec<f64>,
    /// Share of samples classified as the requested class, per class (dataset order).
    pub class_accuracy: Vec<f64>,
    pub class_accuracy_overall: f64,
    /// Fréchet distance, generated samples vs the test set, classifier features.
    pub frechet: f64,
    /// The same distance for as many training images as samples vs the test set.
    pub frechet_floor: f64,
    /// Mean pairwise feature distance within a class, generated / training images: diversity.
    pub within_class_spread_ratio: f64,
    /// The same scores for training images reconstructed by the VQ-VAE: the tokenizer's ceiling.
    pub reconstruction: Ceiling,
}

/// Scores of VQ-VAE reconstructions of training images, at the samples' sample size: what a
/// transformer that predicted every token of real images right would reach.
#[derive(Clone, Debug, Serialize)]
pub struct Ceiling {
    /// Reconstructions classified as their image's class.
    pub class_accuracy_overall: f64,
    /// Reconstructions vs the test set, as `frechet` for the samples.
    pub frechet: f64,
    /// Within-class spread, reconstructions / the same training images.
    pub within_class_spread_ratio: f64,
}

/// Mean and covariance of `n` feature rows of width `d`.
fn moments(features: &[f32], d: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = features.len() / d;
    let x = DMatrix::from_row_iterator(n, d, features.iter().map(|&v| v as f64));
    let mean = DVector::from_iterator(d, x.column_iter().map(|c| c.mean()));
    let mut centred = x;
    for mut row in centred.row_iter_mut() {
        row -= mean.transpose();
    }
    let cov = centred.transpose() * &centred / (n.max(2) - 1) as f64;
    (mean, cov)
}

fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(m.clone());
    let s = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&s) * e.eigenvectors.transpose()
}

/// ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(√Σ₁ Σ₂ √Σ₁) (Heusel et al., 2017), in f64.
pub fn frechet_distance(a: &[f32], b: &[f32], d: usize) -> f64 {
    let (m1, c1) = moments(a, d);
    let (m2, c2) = moments(b, d);
    let s1 = sqrt_psd(&c1);
    let inner = &s1 * &c2 * &s1;
    let inner = (&inner + inner.transpose()) * 0.5;
    let cross: f64 = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    (m1 - m2).norm_squared() + c1.trace() + c2.trace() - 2.0 * cross
}

/// Mean Euclidean distance between all pairs of rows.
fn mean_pairwise(features: &[f32], d: usize) -> f64 {
    let rows: Vec<&[f32]> = features.chunks_exact(d).collect();
    let (mut sum, mut n) = (0.0, 0usize);
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let d2: f32 = rows[i]
                .iter()
                .zip(rows[j])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            sum += (d2 as f64).sqrt();
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// Runs the evaluation, reporting progress as a sentence.
pub fn evaluate(
    opts: &Evaluation,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Result<EvalReport> {
    if opts.per_class < 2 {
        return Err(VarError::InvalidArgument(
            "--per-class must be at least 2 (the Fréchet distance needs a covariance)".into(),
        ));
    }
    let model = modeldir::load(
        &modeldir::resolve(&opts.model)?,
        device,
        &LoadOptions::inference(),
    )?;
    let classifier = Classifier::load_dir(&opts.classifier, device)?;
    let test = FashionMnist::load(&opts.data, Split::Test)?;
    let train = FashionMnist::load(&opts.data, Split::Train)?;
    let classes = model.config.var.num_classes;
    if classes != 10 {
        return Err(VarError::InvalidArgument(format!(
            "{} has {classes} classes; var eval scores Fashion-MNIST models (10 classes)",
            opts.model.display()
        )));
    }
    progress("measuring the reconstruction PSNR on the test set");
    let psnr_images = opts.psnr_images.clamp(1, test.len());
    let size = model.config.image_size;
    let fitted =
        ImageSet::from_fashion_mnist(&test.first(psnr_images), size, fashion_mnist_fit(size));
    let psnr = test_psnr(&model.vqvae, &fitted, psnr_images);
    progress("scoring the classifier on the test set");
    let all_test: Vec<usize> = (0..test.len()).collect();
    let (test_f, test_pred) = classify_dataset(&classifier, &test, &all_test, device)?;
    let mut classifier_class_accuracy = vec![0f64; classes];
    for (p, l) in test_pred.iter().zip(&test.labels) {
        if *p == *l as usize {
            classifier_class_accuracy[*l as usize] += 1.0;
        }
    }
    let per_class_test = test.len() as f64 / classes as f64;
    classifier_class_accuracy
        .iter_mut()
        .for_each(|a| *a /= per_class_test);
    let classifier_accuracy = classifier_class_accuracy.iter().sum::<f64>() / classes as f64;

    let d = model.config.sampling.with_seed(opts.seed);
    let sampling = SamplingParams {
        cfg: opts.cfg.unwrap_or(d.cfg),
        top_k: opts.top_k.unwrap_or(d.top_k),
        top_p: opts.top_p.unwrap_or(d.top_p),
        ..d
    };
    sampling.validate()?;
    let size = model.config.image_size;
    let mut features = Vec::new();
    let mut class_accuracy = Vec::new();
    let mut spread = Vec::new();
    let (mut recon_spread, mut recon_hits) = (Vec::new(), 0usize);
    let mut grid = Vec::new();
    for class in 0..classes {
        progress(&format!(
            "generating {} samples of class {class} ({})",
            opts.per_class, model.config.class_names[class]
        ));
        let mut class_features = Vec::new();
        let mut hits = 0;
        let mut made = 0;
        for (chunk, n) in chunks(opts.per_class, 50).enumerate() {
            let params = SamplingParams {
                seed: opts
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add((class * 1000 + chunk) as u64),
                ..sampling.clone()
            };
            let images = sample(&model, class, n, &params)?;
            let (f, pred) = classifier.classify(grey_input(&images, n, size, device))?;
            hits += pred.iter().filter(|&&p| p == class).count();
            class_features.extend(f);
            if made < 10 {
                grid.extend(Model::to_rgb8(&images, n, size).into_iter().take(10 - made));
            }
            made += n;
        }
        class_accuracy.push(hits as f64 / opts.per_class as f64);
        // Diversity: generated spread relative to real images of the same class.
        let real: Vec<usize> = (0..train.len())
            .filter(|&i| train.labels[i] as usize == class)
            .take(opts.per_class)
            .collect();
        let (real_f, _) = classify_dataset(&classifier, &train, &real, device)?;
        let real_spread = mean_pairwise(&real_f, FEATURES).max(1e-9);
        spread.push(mean_pairwise(&class_features, FEATURES) / real_spread);
        let (recon_f, recon_pred) =
            classify_reconstructions(&model, &classifier, &train, &real, device)?;
        recon_spread.push(mean_pairwise(&recon_f, FEATURES) / real_spread);
        recon_hits += recon_pred.iter().filter(|&&p| p == class).count();
        features.extend(class_features);
    }
    progress("computing Fréchet distances");
    let n = classes * opts.per_class;
    let mut rng = Rng::new(opts.seed ^ 0xF1D);
    let mut order: Vec<usize> = (0..train.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let (train_f, _) = classify_dataset(&classifier, &train, &order[..n], device)?;
    progress("scoring the VQ-VAE's reconstructions (the tokenizer's ceiling)");
    let (recon_f, _) = classify_reconstructions(&model, &classifier, &train, &order[..n], device)?;
    let report = EvalReport {
        model: opts.model.display().to_string(),
        sampling,
        samples_per_class: opts.per_class,
        psnr_db: psnr,
        psnr_images,
        classifier_test_accuracy: classifier_accuracy,
        classifier_class_accuracy,
        class_accuracy_overall: class_accuracy.iter().sum::<f64>() / classes as f64,
        class_accuracy,
        frechet: frechet_distance(&features, &test_f, FEATURES),
        frechet_floor: frechet_distance(&train_f, &test_f, FEATURES),
        within_class_spread_ratio: spread.iter().sum::<f64>() / classes as f64,
        reconstruction: Ceiling {
            class_accuracy_overall: recon_hits as f64 / n as f64,
            frechet: frechet_distance(&recon_f, &test_f, FEATURES),
            within_class_spread_ratio: recon_spread.iter().sum::<f64>() / classes as f64,
        },
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| VarError::io(&opts.out, e))?;
    crate::files::write_atomically(
        &opts.out.join("grid.png"),
        &crate::picture::grid_png(&grid, size, 10.min(opts.per_class))?,
    )?;
    let json = serde_json::to_vec_pretty(&report).expect("plain JSON");
    crate::files::write_atomically(&opts.out.join("eval.json"), &json)?;
    Ok(report)
}

fn chunks(total: usize, size: usize) -> impl Iterator<Item = usize> {
    (0..total.div_ceil(size)).map(move |i| size.min(total - i * size))
}

/// `n` samples of `class` as `[n, 3, H, W]` in [0, 1], host side.
/// The training images `idx` through the VQ-VAE (encoded, quantized at every scale, decoded),
/// judged by the classifier: features and predicted classes.
fn classify_reconstructions(
    model: &Model,
    classifier: &Classifier,
    train: &FashionMnist,
    idx: &[usize],
    device: &Device,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let size = model.config.image_size;
    let set = ImageSet::from_fashion_mnist(&train.pick(idx), size, fashion_mnist_fit(size));
    let vae = &model.vqvae;
    let (mut features, mut predicted) = (Vec::new(), Vec::new());
    let all: Vec<usize> = (0..idx.len()).collect();
    for chunk in all.chunks(100) {
        let (_, f_hat) = vae.img_to_tokens(set.batch(chunk, device));
        let images01 = (vae.fhat_to_img(f_hat).clamp(-1.0, 1.0) + 1.0) / 2.0;
        let images01 = pollster::block_on(read_f32(images01))?;
        let (f, p) = classifier.classify(grey_input(&images01, chunk.len(), size, device))?;
        features.extend(f);
        predicted.extend(p);
    }
    Ok((features, predicted))
}

fn sample(model: &Model, class: usize, n: usize, params: &SamplingParams) -> Result<Vec<f32>> {
    let labels = vec![class; n];
    pollster::block_on(async {
        let t = generate(model, &labels, params, None, |_| ControlFlow::Continue(())).await?;
        read_f32(t).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_distance_of_shifted_gaussians_is_the_squared_shift() {
        let mut rng = Rng::new(3);
        let d = 4;
        let a: Vec<f32> = (0..20_000 * d).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..20_000 * d)
            .map(|i| rng.normal() + if i % d == 0 { 2.0 } else { 0.0 })
            .collect();
        let fd = frechet_distance(&a, &b, d);
        assert!((fd - 4.0).abs() < 0.15, "{fd}");
        assert!(frechet_distance(&a, &a, d).abs() < 1e-9);
        // Scaling one side by 2 adds Σ (2σ − σ)² = d to the trace terms.
        let c: Vec<f32> = a.iter().map(|v| v * 2.0).collect();
        assert!((frechet_distance(&a, &c, d) - d as f64).abs() < 0.1);
    }

    #[test]
    fn chunks_cover_the_total() {
        assert_eq!(chunks(120, 50).collect::<Vec<_>>(), vec![50, 50, 20]);
        assert_eq!(chunks(50, 50).collect::<Vec<_>>(), vec![50]);
    }
}
