//! `var package`: a model directory (config.json, vqvae.safetensors, var.safetensors) assembled
//! from a transformer run, optionally with a fine-tuned decoder in place of the run's VQ-VAE.

use std::path::PathBuf;

use burn::tensor::Device;

use super::VarTrainState;
use super::tokens::tokenizer_fingerprint;
use crate::config::ModelConfig;
use crate::error::{Result, VarError};
use crate::modeldir::{self, LoadOptions};
use crate::modeldir::{CONFIG_FILE, VAR_FILE, VQVAE_FILE};
use crate::train::run::RunDir;

/// What `var package` does: assembles a model directory from a transformer run.
#[derive(Clone, Debug, clap::Args)]
pub struct Packaging {
    /// Run directory of `var train var`.
    #[arg(long)]
    pub run: PathBuf,
    /// A VQ-VAE directory to ship instead of the run's own copy: the same encoder and codebook
    /// with a fine-tuned decoder (`var train vqvae --decoder-only`); anything else is refused.
    #[arg(long)]
    pub vqvae: Option<PathBuf>,
    /// Default classifier-free guidance recorded in the model (what the page starts with).
    #[arg(long)]
    pub cfg: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Output model directory (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes config.json, vqvae.safetensors and var.safetensors of a trained run to `out`.
pub fn package(opts: &Packaging) -> Result<ModelConfig> {
    let run = RunDir::new(&opts.run);
    let mut config = run.read_config()?;
    let state: VarTrainState = run.read_state()?;
    let vqvae = match &opts.vqvae {
        Some(dir) => {
            let path = dir.join(VQVAE_FILE);
            let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
            if tokenizer_fingerprint(&bytes)? != state.vqvae_fingerprint {
                return Err(VarError::InvalidArgument(format!(
                    "{} has another encoder or codebook than the VQ-VAE the transformer was trained on",
                    path.display()
                )));
            }
            // Same tokens, but the decoder may have grown since (`--grow-from`).
            config.vqvae = crate::train::run::read_config(dir)?.vqvae;
            bytes
        }
        None => run.read(VQVAE_FILE)?,
    };
    let s = &mut config.sampling;
    s.cfg = opts.cfg.unwrap_or(s.cfg);
    s.top_k = opts.top_k.unwrap_or(s.top_k);
    s.top_p = opts.top_p.unwrap_or(s.top_p);
    s.validate()?;
    let var = run.read(VAR_FILE)?;
    // Loading proves the three files fit together before anything is written.
    let json = config.to_json();
    let files = modeldir::ModelFiles {
        config_json: &json,
        vqvae: &vqvae,
        var: &var,
    };
    modeldir::load_files(&files, &Device::flex(), &LoadOptions::default())?;
    crate::files::write_files_atomically(
        &opts.out,
        &[
            (CONFIG_FILE, json.as_bytes()),
            (VQVAE_FILE, &vqvae),
            (VAR_FILE, &var),
        ],
    )?;
    Ok(config)
}
