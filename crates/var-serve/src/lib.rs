//! The page (`www/`) on 127.0.0.1, nothing else.
//!
//! WebGPU needs a secure context, which `http://127.0.0.1` is. Files are served only from below
//! the root (tower-http's `ServeDir` refuses `..` and absolute paths), with MIME types from the
//! extension (`.wasm` as `application/wasm`, which streaming compilation requires).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use axum::Router;
use tower_http::services::ServeDir;

/// Why the page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{} has no index.html; run from the repository root or pass --root www", .0.display())]
    NoPage(PathBuf),
    #[error("cannot listen on {addr}: {source} (is the port in use? try --port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{}: {source}", .root.display())]
    Io {
        root: PathBuf,
        source: std::io::Error,
    },
}

/// Serves `root` on `127.0.0.1:port` (0 = any free port) until the process is stopped;
/// `on_ready` receives the URL once the socket is bound.
pub fn serve(root: &Path, port: u16, on_ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    if !root.join("index.html").is_file() {
        return Err(ServeError::NoPage(root.to_path_buf()));
    }
    let io = |source| ServeError::Io {
        root: root.to_path_buf(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .map_err(io)?;
    runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(io)?;
        on_ready(&format!("http://{bound}/"));
        let app = Router::new().fallback_service(ServeDir::new(root));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(io)
    })
}
