//! `var train vqvae | var | classifier`: the three Fashion-MNIST trainers under one step bar.

use std::process::ExitCode;

use burn::tensor::Device;
use indicatif::ProgressBar;

use var_web::error::Result;
use var_web::train::classifier::{ClassifierTraining, train_classifier};
use var_web::train::var::{VarProgress, VarTraining, train_var};
use var_web::train::vqvae::{VqvaeTraining, train_vqvae};

use super::progress::{say, step_bar};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Train the multi-scale VQ-VAE of the Fashion-MNIST preset.
    Vqvae(Box<VqvaeTraining>),
    /// Train the transformer on the token maps of a trained VQ-VAE.
    Var(VarTraining),
    /// Train the project's Fashion-MNIST classifier (the judge of `var eval`).
    Classifier(ClassifierTraining),
}

impl Command {
    pub fn run(self, device: &Device) -> Result<ExitCode> {
        let device = device.clone().autodiff();
        match self {
            Command::Vqvae(opts) => with_step_bar(opts.steps, |pb| {
                train_vqvae(&opts, &device, |r| {
                    pb.set_position(r.step as u64);
                    let psnr = r
                        .test_psnr
                        .map(|p| format!(" test PSNR {p:.2} dB"))
                        .unwrap_or_default();
                    pb.set_message(format!(
                        "loss {:.4} (rec {:.4}, vq {:.4}) {:.0} img/s{psnr}",
                        r.loss, r.reconstruction, r.quantization, r.images_per_second
                    ));
                    if r.test_psnr.is_some() {
                        say(pb, format!("step {}: checkpoint written;{psnr}", r.step));
                    }
                })
            }),
            Command::Var(opts) => with_step_bar(opts.steps, |pb| {
                train_var(&opts, &device, |p| match p {
                    VarProgress::Tokenizing { done, total } => {
                        pb.set_message(format!("tokenizing the training set: {done}/{total}"));
                    }
                    VarProgress::Step(r) => {
                        pb.set_position(r.step as u64);
                        pb.set_message(format!(
                            "loss {:.4} acc {:.3} lr {:.1e} {:.1} seq/s",
                            r.loss, r.accuracy, r.lr, r.sequences_per_second
                        ));
                        if let Some((l, a)) = r.validation {
                            say(
                                pb,
                                format!(
                                    "step {}: checkpoint written; validation loss {l:.4}, accuracy {a:.3}",
                                    r.step
                                ),
                            );
                        }
                    }
                })
            }),
            Command::Classifier(opts) => with_step_bar(opts.steps, |pb| {
                train_classifier(&opts, &device, |r| {
                    pb.set_position(r.step as u64);
                    pb.set_message(format!(
                        "loss {:.4} {:.0} img/s",
                        r.loss, r.images_per_second
                    ));
                    if let Some(a) = r.test_accuracy {
                        say(
                            pb,
                            format!(
                                "step {}: checkpoint written; test accuracy {:.2}%",
                                r.step,
                                a * 100.0
                            ),
                        );
                    }
                })
            }),
        }
    }
}

/// Runs a trainer that reports to the step bar; the bar stays on screen when training ends.
fn with_step_bar(steps: usize, train: impl FnOnce(&ProgressBar) -> Result<()>) -> Result<ExitCode> {
    let pb = step_bar(steps);
    train(&pb)?;
    pb.finish();
    Ok(ExitCode::SUCCESS)
}
