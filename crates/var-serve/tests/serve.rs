//! The server end to end over a real socket: the page and its wasm with the MIME types a
//! browser needs, and nothing outside the root.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;

/// Starts the server on a free port over `root` and returns its `host:port`.
fn start(root: &Path) -> String {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        var_serve::serve(&root, 0, |url| tx.send(url.to_string()).unwrap()).unwrap();
    });
    let url = rx.recv().unwrap();
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// One HTTP/1.1 GET; returns the status line and the headers, lower-cased.
fn get(host: &str, path: &str) -> (String, String) {
    get_as(host, host, path)
}

/// [`get`] with another `Host` header than the address connected to.
fn get_as(addr: &str, host: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let head = response.split("\r\n\r\n").next().unwrap().to_lowercase();
    let status = head.lines().next().unwrap().to_string();
    (status, head)
}

#[test]
fn serves_the_page_and_its_wasm_and_nothing_outside_the_root() {
    let dir = std::env::temp_dir().join(format!("var-serve-test-{}", std::process::id()));
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(root.join("pkg/m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::create_dir_all(root.join("models/m")).unwrap();
    std::fs::write(root.join("models/m/config.json"), "{}").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside the root").unwrap();
    let host = start(&root);

    let (status, head) = get(&host, "/index.html");
    assert!(status.contains(" 200 "), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    let (status, head) = get(&host, "/pkg/m.wasm");
    assert!(status.contains(" 200 "), "{head}");
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // Model files are readable by pages of other origins, with what revalidation needs.
    let (status, head) = get(&host, "/models/m/config.json");
    assert!(status.contains(" 200 "), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(
        head.contains("access-control-expose-headers: etag, last-modified, content-length"),
        "{head}"
    );
    assert!(head.contains("last-modified: "), "{head}");
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/nope.js"] {
        let (status, head) = get(&host, path);
        assert!(!status.contains(" 200 "), "{path}: {head}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_root_and_foreign_hosts_are_refused() {
    let dir = std::env::temp_dir().join(format!("var-serve-links-{}", std::process::id()));
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("models")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(root.join("models/inside.json"), "{}").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside the root").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&dir, root.join("up")).unwrap();
    std::os::unix::fs::symlink(root.join("models"), root.join("alias")).unwrap();
    let host = start(&root);

    for path in ["/leak.txt", "/up/secret.txt", "/up/"] {
        let (status, head) = get(&host, path);
        assert!(status.contains(" 404 "), "{path}: {head}");
    }
    // A link that stays inside the root is served.
    let (status, head) = get(&host, "/alias/inside.json");
    assert!(status.contains(" 200 "), "{head}");
    // DNS rebinding: a page on another name that resolves here gets nothing.
    let port = host.rsplit(':').next().unwrap();
    for name in ["evil.example", "127.0.0.1.nip.io", "localhost"] {
        let (status, head) = get_as(&host, &format!("{name}:1{port}"), "/index.html");
        assert!(status.contains(" 403 "), "{name}: {head}");
    }
    let (status, head) = get_as(&host, &format!("localhost:{port}"), "/index.html");
    assert!(status.contains(" 200 "), "{head}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_root_without_a_page_is_refused_with_a_sentence() {
    let err = var_serve::serve(Path::new("/nonexistent-var-root"), 0, |_| {}).unwrap_err();
    assert!(err.to_string().contains("has no index.html"), "{err}");
}
