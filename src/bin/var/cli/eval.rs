//! `var eval`: score a Fashion-MNIST model and print the report.

use std::process::ExitCode;

use burn::tensor::Device;

use var_web::error::Result;
use var_web::train::eval::{Evaluation, evaluate};

use super::progress::spinner;

pub fn run(opts: &Evaluation, device: &Device) -> Result<ExitCode> {
    let pb = spinner("evaluating");
    let report = evaluate(opts, device, |m| pb.set_message(m.to_string()));
    pb.finish_and_clear();
    let r = report?;
    println!(
        "reconstruction PSNR: {:.2} dB ({} test images)",
        r.psnr_db, r.psnr_images
    );
    println!(
        "classifier test accuracy: {:.2}%",
        r.classifier_test_accuracy * 100.0
    );
    println!(
        "samples: {} per class, cfg {}, top-k {}, top-p {}",
        r.samples_per_class, r.sampling.cfg, r.sampling.top_k, r.sampling.top_p
    );
    println!(
        "class adherence (samples classified as the requested class; the classifier on real test images beside it):"
    );
    for ((name, a), real) in var_web::FASHION_MNIST_CLASSES
        .iter()
        .zip(&r.class_accuracy)
        .zip(&r.classifier_class_accuracy)
    {
        println!("  {name:<12} {:6.1}%   ({:5.1}%)", a * 100.0, real * 100.0);
    }
    println!(
        "  {:<12} {:6.1}%",
        "overall",
        r.class_accuracy_overall * 100.0
    );
    println!(
        "Fréchet distance (classifier features): {:.3}, floor (train vs test) {:.3}",
        r.frechet, r.frechet_floor
    );
    println!(
        "within-class spread, generated / real: {:.2}",
        r.within_class_spread_ratio
    );
    let c = &r.reconstruction;
    println!(
        "the tokenizer's ceiling (training images through the VQ-VAE alone, as many): adherence {:.1}%, Fréchet distance {:.3}, spread {:.2}",
        c.class_accuracy_overall * 100.0,
        c.frechet,
        c.within_class_spread_ratio
    );
    println!("wrote {}/eval.json and grid.png", opts.out.display());
    Ok(ExitCode::SUCCESS)
}
