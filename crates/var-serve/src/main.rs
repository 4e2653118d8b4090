//! `var-serve`: the demo's server (the same as `var serve`, without building the model crates).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Serve the page (www/) on 127.0.0.1.
#[derive(Parser)]
#[command(name = "var-serve", version)]
struct Args {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Directory to serve (the page and its wasm package).
    #[arg(long, default_value = "www")]
    root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let root = args.root.clone();
    match var_serve::serve(&args.root, args.port, |url| {
        println!("serving {} at {url}", root.display());
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
