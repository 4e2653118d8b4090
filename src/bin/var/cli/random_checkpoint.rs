//! `var random-checkpoint`: random weights in the official checkpoints' format.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;

use var_web::config::ModelConfig;
use var_web::error::{Result, VarError};
use var_web::model::{Model, official_depth};
use var_web::nn::export::export_module;
use var_web::weights::pth::write::write_state_dict;

use super::progress::spinner;

#[derive(clap::Args)]
pub struct Args {
    /// Transformer depth of the official preset (16, 20, 24, 30).
    #[arg(long, default_value_t = 16)]
    depth: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (created if missing; existing checkpoints are replaced).
    #[arg(long)]
    out: PathBuf,
}

impl Args {
    pub fn run(self, device: &Device) -> Result<ExitCode> {
        let depth = official_depth(self.depth)?;
        std::fs::create_dir_all(&self.out).map_err(|e| VarError::io(&self.out, e))?;
        let pb = spinner(&format!("building random VAR-d{depth} + VQ-VAE"));
        let model = Model::random(ModelConfig::official(depth), self.seed, device)?;
        let vae = self.out.join("vae_ch160v4096z32.pth");
        let var = self.out.join(format!("var_d{depth}.pth"));
        pb.set_message(format!("writing {}", vae.display()));
        write_state_dict(&vae, &export_module(&model.vqvae)?)?;
        pb.set_message(format!("writing {}", var.display()));
        write_state_dict(&var, &export_module(&model.var)?)?;
        pb.finish_and_clear();
        println!("wrote {} and {}", vae.display(), var.display());
        Ok(ExitCode::SUCCESS)
    }
}
