//! `var convert`: official PyTorch checkpoints into a model directory.

use std::path::PathBuf;
use std::process::ExitCode;

use var_web::config::parse_patch_nums;
use var_web::convert::{ConvertOptions, convert_pth};
use var_web::error::Result;

use super::progress::spinner;

#[derive(clap::Args)]
pub struct Args {
    /// The VQ-VAE checkpoint, e.g. vae_ch160v4096z32.pth.
    #[arg(long)]
    vae: PathBuf,
    /// The transformer checkpoint, e.g. var_d16.pth.
    #[arg(long)]
    var: PathBuf,
    /// Side of each scale's token map, coarse to fine (checked against pos_1LC).
    #[arg(long, default_value = "1,2,3,4,5,6,8,10,13,16")]
    patch_nums: String,
    /// Output model directory (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Storage precision: f32, f16, or int8 (transformer matrices per output channel,
    /// f16 elsewhere).
    // `--quantize` was this flag's name before `quantize` and `bench` settled on `--precision`;
    // old command lines keep working. Parsed here, not by clap, so a bad value is refused with
    // the library's message and exit code like every other error.
    #[arg(long, default_value = "f32", alias = "quantize")]
    precision: String,
    /// Largest shard in MiB: the directory holds manifest.json and shards the page
    /// downloads, checks and caches one by one. 0 writes the two files unsharded.
    #[arg(long, default_value_t = 64)]
    shard_mib: usize,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let patch_nums = parse_patch_nums(&self.patch_nums)?;
        let storage = self.precision.parse()?;
        let shards = (self.shard_mib > 0).then_some(self.shard_mib << 20);
        let pb = spinner("converting");
        let options = ConvertOptions {
            storage,
            shard_bytes: shards,
        };
        let converted = convert_pth(
            &self.vae,
            &self.var,
            &patch_nums,
            &self.out,
            &options,
            |m| pb.set_message(m.to_string()),
        );
        pb.finish_and_clear();
        let converted = converted?;
        let cfg = &converted.config;
        println!(
            "wrote {} (VAR-d{}, {} classes, {} scales, {} px)",
            self.out.display(),
            cfg.var.depth,
            cfg.var.num_classes,
            cfg.patch_nums.len(),
            cfg.image_size
        );
        if shards.is_some() {
            // The page shows the same value for a model it converted from the same files.
            println!(
                "fingerprint {} (SHA-256 of manifest.json)",
                converted.fingerprint()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
