//! `var plot`: columns of a training log against the step, or evaluations' class adherence
//! against their Fréchet distance, as a PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use var_web::error::Result;
use var_web::train::plot::{EvalPoint, loss_curve, tradeoff};

#[derive(clap::Args)]
#[group(id = "what", required = true, args = ["log", "evals"])]
pub struct Args {
    /// A training run's log.csv (with --columns).
    #[arg(long, requires = "columns")]
    log: Option<PathBuf>,
    /// Comma-separated column names, e.g. loss,val_loss or test_psnr.
    #[arg(long)]
    columns: Option<String>,
    /// `var eval` outputs (eval.json files, comma-separated): class adherence against the
    /// Fréchet distance, one point each, with the floor and the tokenizer's ceiling.
    #[arg(long, value_delimiter = ',', conflicts_with = "log")]
    evals: Vec<PathBuf>,
    #[arg(long, default_value = "training")]
    title: String,
    #[arg(long)]
    out: PathBuf,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        if let (Some(log), Some(columns)) = (&self.log, &self.columns) {
            let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
            loss_curve(log, &self.out, &self.title, &columns)?;
        } else {
            let points = self
                .evals
                .iter()
                .map(|p| EvalPoint::read(p))
                .collect::<Result<Vec<_>>>()?;
            tradeoff(&points, &self.out, &self.title)?;
        }
        println!("wrote {}", self.out.display());
        Ok(ExitCode::SUCCESS)
    }
}
