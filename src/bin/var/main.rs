//! `var`: convert official checkpoints, verify parity, generate images, serve the page,
//! benchmark. Native only: the wasm build of this crate is the web adapter (`src/web.rs`), but
//! cargo still builds binaries for the wasm integration tests, so the CLI is compiled out there.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
