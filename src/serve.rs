//! `var serve`: the page (`www/`) on 127.0.0.1, nothing else.
//!
//! WebGPU needs a secure context, which `http://127.0.0.1` is. Files are served only from below
//! the root (tower-http's `ServeDir` refuses `..` and absolute paths), with MIME types from the
//! extension (`.wasm` as `application/wasm`, which streaming compilation requires).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use axum::Router;
use tower_http::services::ServeDir;

use crate::error::{Result, VarError};

/// Serves `root` on `127.0.0.1:port` until the process is stopped; `on_ready` receives the URL
/// once the socket is bound.
pub fn serve(root: &Path, port: u16, on_ready: impl FnOnce(&str)) -> Result<()> {
    if !root.join("index.html").is_file() {
        return Err(VarError::InvalidArgument(format!(
            "{} has no index.html; run from the repository root or pass --root www",
            root.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .map_err(|e| VarError::io(root, e))?;
    runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            VarError::InvalidArgument(format!(
                "cannot listen on {addr}: {e} (is the port in use? try --port)"
            ))
        })?;
        let bound = listener.local_addr().map_err(|e| VarError::io(root, e))?;
        on_ready(&format!("http://{bound}/"));
        let app = Router::new().fallback_service(ServeDir::new(root));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| VarError::io(root, e))
    })
}
