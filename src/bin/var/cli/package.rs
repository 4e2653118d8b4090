//! `var package`: the model directory of a `var train var` run.

use std::process::ExitCode;

use var_web::error::Result;
use var_web::train::var::{Packaging, package};

pub fn run(opts: &Packaging) -> Result<ExitCode> {
    let c = package(opts)?;
    println!(
        "wrote {} (depth {}, {} classes, cfg {}, top-k {}, top-p {})",
        opts.out.display(),
        c.var.depth,
        c.var.num_classes,
        c.sampling.cfg,
        c.sampling.top_k,
        c.sampling.top_p
    );
    Ok(ExitCode::SUCCESS)
}
