//! The `var` command line: the parser, its subcommands (one module each) and the dispatch.

mod agreement;
mod bench;
mod convert;
mod eval;
mod export;
mod generate;
mod inpaint;
mod package;
mod plot;
mod progress;
mod quantize;
mod random_checkpoint;
mod sampling;
mod serve;
mod train;
mod verify;

use std::process::ExitCode;

use burn::tensor::Device;
use clap::{Parser, Subcommand};

use var_web::error::Result;

#[derive(Parser)]
#[command(
    name = "var",
    version,
    about = "VAR: next-scale prediction image generation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the training variant (it carries a ModelConfig) does
// not matter, and boxing it would lose clap's derive.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Convert official PyTorch checkpoints (vae_*.pth + var_d*.pth) into a model directory.
    Convert(convert::Args),
    /// Rewrite an f32 model directory at another precision (int8 transformer weights, f16
    /// elsewhere; or f16 throughout).
    Quantize(quantize::Args),
    /// Compare a quantized model with its f32 original: teacher-forced logits (KL, top-1)
    /// and greedy generation agreement.
    Agreement(agreement::Args),
    /// Run the reference parity checks of a golden fixture against a model directory.
    Verify(verify::Args),
    /// Generate images of one class and write them as PNG files.
    Generate(generate::Args),
    /// In-paint, out-paint or edit an image: regenerate the masked part, scale by scale, keeping
    /// the source's tokens elsewhere.
    Inpaint(inpaint::Args),
    /// Train a model on Fashion-MNIST or a folder of your images, on the CPU or a GPU
    /// (resumable; see the README's training sections).
    Train(train::Args),
    /// Write Fashion-MNIST images as an image folder (one subfolder per class, 28x28 PNGs):
    /// data for trying `var train --data DIR`.
    ExportFashionMnist(export::Args),
    /// Score a Fashion-MNIST model: reconstruction PSNR, class adherence and Fréchet distance
    /// under the project's classifier, and a sample grid.
    Eval(var_web::train::eval::Evaluation),
    /// Plot columns of a training log (log.csv) against the step as a PNG.
    Plot(plot::Args),
    /// Assemble a model directory (what the page loads) from a `var train var` run.
    Package(var_web::train::var::Packaging),
    /// Serve the web page (www/) on 127.0.0.1 and print its URL.
    Serve(serve::Args),
    /// Write random weights under the official key names and shapes as PyTorch checkpoints
    /// (`vae_ch160v4096z32.pth`, `var_d{depth}.pth`): the converter and the page at official
    /// scale without the official files.
    RandomCheckpoint(random_checkpoint::Args),
    /// Time generation per scale, f32 against int8 and CPU against GPU side by side, with
    /// FLOPs, GFLOP/s and memory: the official d16 + 256 px VQ-VAE shapes with random weights,
    /// or a model directory.
    Bench(bench::Args),
}

impl Command {
    fn run(self) -> Result<ExitCode> {
        let device = Device::flex();
        match self {
            Command::Convert(args) => args.run(),
            Command::Quantize(args) => args.run(),
            Command::Agreement(args) => args.run(&device),
            Command::Verify(args) => args.run(&device),
            Command::Generate(args) => args.run(&device),
            Command::Inpaint(args) => args.run(&device),
            Command::Train(args) => args.run(),
            Command::ExportFashionMnist(args) => args.run(),
            Command::Eval(opts) => eval::run(&opts, &device),
            Command::Plot(args) => args.run(),
            Command::Package(opts) => package::run(&opts),
            Command::Serve(args) => args.run(),
            Command::RandomCheckpoint(args) => args.run(&device),
            Command::Bench(args) => args.run(),
        }
    }
}

/// Parses the command line and runs it; errors are printed on stderr with exit code 1.
pub fn main() -> ExitCode {
    match Cli::parse().command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
