//! `var plot`: columns of a training log against the step, as a PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use var_web::error::Result;
use var_web::train::plot::loss_curve;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    log: PathBuf,
    /// Comma-separated column names, e.g. loss,val_loss or test_psnr.
    #[arg(long)]
    columns: String,
    #[arg(long, default_value = "training")]
    title: String,
    #[arg(long)]
    out: PathBuf,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let columns: Vec<&str> = self.columns.split(',').map(str::trim).collect();
        loss_curve(&self.log, &self.out, &self.title, &columns)?;
        println!("wrote {}", self.out.display());
        Ok(ExitCode::SUCCESS)
    }
}
