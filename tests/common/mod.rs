//! Shared test helpers: fixture paths and fixture models converted once per test binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::Device;
use var_web::config::Storage;
use var_web::config::parse_patch_nums;
use var_web::convert::{ConvertOptions, convert_pth};
use var_web::model::Model;
use var_web::modeldir::{self, LoadOptions};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh, unique scratch directory under the system temp dir.
pub fn scratch(tag: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("var-web-{tag}-"))
        .tempdir()
        .unwrap()
        .keep()
}

/// The mini fixture (`vae_tiny.pth` + `var_mini.pth`, scales 1,2,3,4) converted at `storage`,
/// in shards of `shard_bytes` (`None`: the three unsharded files), into a new scratch directory.
pub fn convert_mini(tag: &str, storage: Storage, shard_bytes: Option<usize>) -> PathBuf {
    let out = scratch(tag).join("m");
    let options = ConvertOptions {
        storage,
        shard_bytes,
    };
    convert_pth(
        &fixture("vae_tiny.pth"),
        &fixture("var_mini.pth"),
        &[1, 2, 3, 4],
        &out,
        &options,
        |_| {},
    )
    .unwrap();
    out
}

/// Converts `vae_tiny.pth` + `var_{name}.pth` with the fixture's scales into a model directory
/// (once per test binary) and returns its path.
pub fn fixture_model_dir(name: &str) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        OnceLock::new();
    let map = DIRS.get_or_init(Default::default);
    let mut map = map.lock().unwrap();
    map.entry(name.to_string())
        .or_insert_with(|| {
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixture(&format!("golden_{name}.json"))).unwrap(),
            )
            .unwrap();
            let pn: Vec<String> = meta["patch_nums"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
                .collect();
            let out = scratch(name).join("model");
            convert_pth(
                &fixture("vae_tiny.pth"),
                &fixture(&format!("var_{name}.pth")),
                &parse_patch_nums(&pn.join(",")).unwrap(),
                &out,
                &ConvertOptions::default(),
                |_| {},
            )
            .unwrap();
            out
        })
        .clone()
}

pub fn fixture_model(name: &str) -> Model {
    modeldir::load(
        &fixture_model_dir(name),
        &Device::flex(),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// Runs the `var` binary with `args`.
pub fn var(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_var"))
        .args(args)
        .output()
        .expect("the var binary runs")
}

/// Runs `var` and returns its stderr, failing the test unless it succeeded.
pub fn var_ok(args: &[&str]) -> String {
    let o = var(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "var {args:?} failed: {err}");
    err
}

/// Runs `var` and checks that it failed with a sentence containing `needle`, without a panic.
pub fn var_refused(args: &[&str], needle: &str) {
    let o = var(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "var {args:?} succeeded");
    assert!(err.contains(needle), "var {args:?}: {err}");
    assert!(!err.contains("panicked"), "var {args:?} panicked: {err}");
}
