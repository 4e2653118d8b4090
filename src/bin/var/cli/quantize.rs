//! `var quantize`: rewrite an f32 model directory at another precision.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use var_web::convert::quantize_dir;
use var_web::error::{Result, VarError};
use var_web::modeldir::{CONFIG_FILE, VAR_FILE, VQVAE_FILE};

#[derive(clap::Args)]
pub struct Args {
    /// The f32 model directory.
    #[arg(long, default_value = var_web::DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// int8 | f16 | f32.
    #[arg(long, default_value = "int8")]
    precision: String,
    /// int8 scale group: this many input columns share a scale (0 = one per output channel).
    #[arg(long, default_value_t = 0)]
    group: usize,
    /// Output model directory (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let storage = self.precision.parse()?;
        let model = var_web::modeldir::resolve(&self.model)?;
        let before = dir_bytes(&model)?;
        let c = quantize_dir(&model, storage, self.group, &self.out)?;
        let after = dir_bytes(&self.out)?;
        println!(
            "wrote {} ({:?}): {after} bytes, {:.3}x the {before} bytes of {}",
            self.out.display(),
            c.storage,
            after as f64 / before as f64,
            model.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Total size of a model directory's three files.
fn dir_bytes(dir: &Path) -> Result<u64> {
    [CONFIG_FILE, VQVAE_FILE, VAR_FILE]
        .iter()
        .map(|f| {
            let p = dir.join(f);
            std::fs::metadata(&p)
                .map(|m| m.len())
                .map_err(|e| VarError::io(&p, e))
        })
        .sum()
}
