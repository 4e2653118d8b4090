//! `var serve`: the page (`www/`) on 127.0.0.1, by the `var-serve` crate (which the demo runs
//! on its own, without compiling the model crates).

use std::path::Path;

use var_serve::ServeError;

use crate::error::{Result, VarError};

/// Serves `root` on `127.0.0.1:port` until the process is stopped; `on_ready` receives the URL
/// once the socket is bound.
pub fn serve(root: &Path, port: u16, on_ready: impl FnOnce(&str)) -> Result<()> {
    var_serve::serve(root, port, on_ready).map_err(|e| match e {
        ServeError::Io { root, source } => VarError::io(root, source),
        other => VarError::InvalidArgument(other.to_string()),
    })
}
