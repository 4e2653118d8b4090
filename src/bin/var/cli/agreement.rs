//! `var agreement`: how closely a quantized model follows its f32 original.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;

use var_web::agreement::compare;
use var_web::error::Result;
use var_web::modeldir::{self, LoadOptions};

use super::progress::spinner;

#[derive(clap::Args)]
pub struct Args {
    /// The f32 original.
    #[arg(long)]
    original: PathBuf,
    /// The quantized copy.
    #[arg(long)]
    model: PathBuf,
    /// Sequences compared (classes in turn).
    #[arg(long, default_value_t = 100)]
    sequences: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Args {
    pub fn run(self, device: &Device) -> Result<ExitCode> {
        let a = modeldir::load(&self.original, device, &LoadOptions::default())?;
        let b = modeldir::load(&self.model, device, &LoadOptions::default())?;
        let pb = spinner("comparing");
        let r = pollster::block_on(compare(&a, &b, self.sequences, self.seed));
        pb.finish_and_clear();
        let r = r?;
        println!("sequences: {}", r.sequences);
        println!(
            "teacher-forced KL(original || quantized): {:.5} nats per token",
            r.kl
        );
        println!("teacher-forced top-1 agreement: {:.2}%", r.top1 * 100.0);
        println!(
            "greedy generation, tokens agreeing: {:.2}%",
            r.greedy_tokens * 100.0
        );
        println!(
            "greedy generation, identical images: {} of {}",
            r.greedy_identical, r.sequences
        );
        Ok(ExitCode::SUCCESS)
    }
}
