//! `var serve`: the web page on 127.0.0.1.

use std::path::PathBuf;
use std::process::ExitCode;

use var_web::error::Result;
use var_web::serve::serve;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Directory to serve (the page and its wasm package).
    #[arg(long, default_value = "www")]
    root: PathBuf,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        serve(&self.root, self.port, |url| {
            println!("serving {} at {url}", self.root.display());
        })?;
        Ok(ExitCode::SUCCESS)
    }
}
