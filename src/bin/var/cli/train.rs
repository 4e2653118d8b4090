//! `var train [--device D] vqvae | var | classifier`: the trainers under one step bar, on the
//! device asked for.

use std::process::ExitCode;

use burn::tensor::Device;
use indicatif::ProgressBar;

use var_web::error::{Result, VarError};
use var_web::train::classifier::{ClassifierTraining, train_classifier};
use var_web::train::device::{TrainDevice, open_all};
use var_web::train::var::{VarProgress, VarTraining, train_var_on};
use var_web::train::vqvae::{VqvaeProgress, VqvaeTraining, train_vqvae_on};

use super::progress::{say, step_bar};

#[derive(clap::Args)]
pub struct Args {
    /// Where the trainer runs: `cpu` (burn-flex), `wgpu` (Vulkan, Metal or DirectX; any GPU,
    /// or lavapipe) or `cuda[:N]` (NVIDIA, in a build with `--features cuda`). A list
    /// (`cuda:0,cuda:1`) splits each batch over the devices (data parallelism; vqvae and var).
    /// Checkpoints are the same on every device: a run resumes on another.
    #[arg(long, global = true, default_value = "cpu", value_delimiter = ',')]
    device: Vec<TrainDevice>,
    #[command(subcommand)]
    command: Command,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let devices = open_all(&self.device)?;
        self.command.run(&devices)
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Train the multi-scale VQ-VAE: the Fashion-MNIST preset, or --image-size and
    /// --patch-nums for another resolution; on Fashion-MNIST or an image folder (--data).
    Vqvae(Box<VqvaeTraining>),
    /// Train the transformer on the token maps of a trained VQ-VAE.
    Var(VarTraining),
    /// Train the project's Fashion-MNIST classifier (the judge of `var eval`).
    Classifier(ClassifierTraining),
}

impl Command {
    /// Runs the trainer on `devices` (autodiff devices; the classifier takes one).
    pub fn run(self, devices: &[Device]) -> Result<ExitCode> {
        let device = &devices[0];
        match self {
            Command::Vqvae(opts) => with_step_bar(opts.steps, |pb| {
                train_vqvae_on(&opts, devices, |p| {
                    let r = match p {
                        VqvaeProgress::Data(line) => return say(pb, line.to_string()),
                        VqvaeProgress::Step(r) => r,
                    };
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
                train_var_on(&opts, devices, |p| match p {
                    VarProgress::Data(line) => say(pb, line.to_string()),
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
            Command::Classifier(_) if devices.len() > 1 => Err(VarError::InvalidArgument(
                "the classifier trains on one device: pass one --device".into(),
            )),
            Command::Classifier(opts) => with_step_bar(opts.steps, |pb| {
                train_classifier(&opts, device, |r| {
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
