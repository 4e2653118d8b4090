//! `var verify`: the reference parity checks of a golden fixture against a model directory.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;

use var_web::error::{Result, VarError};
use var_web::modeldir::{self, LoadOptions};
use var_web::verify::{GoldenMeta, verify};

use super::progress::spinner;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// Golden tensors (golden_*.safetensors).
    #[arg(long)]
    golden: PathBuf,
    /// Golden metadata (golden_*.json).
    #[arg(long)]
    meta: PathBuf,
}

impl Args {
    /// Fails (exit code 1) when any check fails, after printing them all.
    pub fn run(self, device: &Device) -> Result<ExitCode> {
        let model = modeldir::load(&self.model, device, &LoadOptions::inference())?;
        let meta_text =
            std::fs::read_to_string(&self.meta).map_err(|e| VarError::io(&self.meta, e))?;
        let meta: GoldenMeta = serde_json::from_str(&meta_text).map_err(|e| VarError::Json {
            path: self.meta.display().to_string(),
            message: e.to_string(),
        })?;
        let bytes = std::fs::read(&self.golden).map_err(|e| VarError::io(&self.golden, e))?;
        let pb = spinner("running the parity checks");
        let checks = pollster::block_on(verify(&model, &bytes, &meta));
        pb.finish_and_clear();
        let checks = checks?;
        for c in &checks {
            println!("{c}");
        }
        Ok(if checks.iter().all(|c| c.passed()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
