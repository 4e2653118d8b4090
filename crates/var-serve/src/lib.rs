//! The page (`www/`) on 127.0.0.1, nothing else.
//!
//! WebGPU needs a secure context, which `http://127.0.0.1` is. Every request passes one guard
//! before tower-http's `ServeDir` answers it:
//! - the `Host` header must name this server (`127.0.0.1`, `localhost` or `[::1]` with its
//!   port), so a page on another site cannot reach it through DNS rebinding;
//! - the path, percent-decoded and with symlinks resolved, must stay below the root (ServeDir
//!   refuses `..` and absolute paths but follows symlinks out of the folder);
//! - every response says `X-Content-Type-Options: nosniff`, so a browser never runs a file as
//!   a type other than the one its extension gives (`.wasm` is `application/wasm`, which
//!   streaming compilation requires);
//! - model files (`/models/…`) may be read by pages of any origin (`Access-Control-Allow-Origin:
//!   *`, no credentials), as a model hub's are: the page asks before it loads a model from
//!   another origin, and that origin must allow it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
    let canonical_root = root.canonicalize().map_err(io)?;
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
        let guard = Arc::new(Guard {
            root: canonical_root.clone(),
            hosts: allowed_hosts(bound.port()),
        });
        let app = Router::new()
            .fallback_service(ServeDir::new(&canonical_root))
            .layer(middleware::from_fn_with_state(guard, check));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(io)
    })
}

/// What every request is checked against.
struct Guard {
    /// The served folder, symlinks resolved.
    root: PathBuf,
    /// The `Host` values that name this server.
    hosts: Vec<String>,
}

/// The names a browser on this machine uses for the server, with the port (and without it on
/// port 80, where browsers leave it out).
fn allowed_hosts(port: u16) -> Vec<String> {
    let names = ["127.0.0.1", "localhost", "[::1]"];
    let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
    if port == 80 {
        hosts.extend(names.iter().map(|n| n.to_string()));
    }
    hosts
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let shared = request.uri().path().starts_with("/models/");
    let mut response = if !host.is_some_and(|h| guard.hosts.contains(&h)) {
        (
            StatusCode::FORBIDDEN,
            "this server answers only to 127.0.0.1 and localhost on its own port\n",
        )
            .into_response()
    } else if !stays_below(&guard.root, request.uri().path()) {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    } else {
        next.run(request).await
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A 404 too: a page tells a model in three files by its missing manifest.json.
    if shared {
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        // What the page revalidates a cached file with (ETag is not readable cross-origin
        // unless exposed).
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag, Last-Modified, Content-Length"),
        );
    }
    response
}

/// Whether the file (or directory, with its `index.html`) that `path` names resolves to a
/// place below `root`, symlinks followed. A path that names nothing passes: ServeDir answers
/// 404 for it. `..` and undecodable paths are refused outright.
fn stays_below(root: &Path, path: &str) -> bool {
    let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else {
        return false;
    };
    let mut target = root.to_path_buf();
    for part in decoded.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return false,
            part => target.push(part),
        }
    }
    let below = |p: &Path| match p.canonicalize() {
        Ok(real) => real.starts_with(root),
        Err(_) => !p.exists() && p.symlink_metadata().is_err(),
    };
    below(&target) && (!target.is_dir() || below(&target.join("index.html")))
}
