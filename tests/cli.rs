//! The `var` binary end to end: determinism of `generate`, and one clear sentence plus a
//! non-zero exit for bad input.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn var(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_var"))
        .args(args)
        .output()
        .expect("the var binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn model_dir() -> String {
    common::fixture_model_dir("mini").display().to_string()
}

/// Runs `var generate` twice with the same arguments into separate folders and returns the
/// bytes of the named output files of each run.
fn generate_twice(tag: &str, args: &[&str], files: &[&str]) -> [Vec<Vec<u8>>; 2] {
    let model = model_dir();
    let dir = common::scratch(tag);
    ["a", "b"].map(|run| {
        let out = dir.join(run);
        let mut all = vec![
            "generate",
            "--model",
            &model,
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let o = var(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        files
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect()
    })
}

#[test]
fn generate_is_byte_identical_for_the_same_seed() {
    let args = [
        "--class", "3", "--seed", "11", "--count", "2", "--top-k", "20", "--top-p", "0.9", "--cfg",
        "2",
    ];
    let [a, b] = generate_twice("gen", &args, &["class3_seed11.png", "class3_seed12.png"]);
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a[0], a[1], "different seeds, different images");
    // A real 64x64 RGB PNG.
    let decoder = png::Decoder::new(std::io::Cursor::new(&a[0]));
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (64, 64));
}

#[test]
fn smooth_sampling_runs_and_is_deterministic() {
    let args = ["--class", "0", "--seed", "5", "--smooth"];
    let [a, b] = generate_twice("smooth", &args, &["class0_seed5.png"]);
    assert_eq!(a, b);
}

fn assert_refused(args: &[&str], needle: &str) {
    let o = var(args);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = stderr(&o);
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn bad_generate_arguments_are_refused_with_a_sentence() {
    let model = model_dir();
    let out = common::scratch("bad");
    let out = out.to_str().unwrap();
    let base = ["generate", "--model", model.as_str(), "--out", out];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    for (extra, needle) in [
        (&["--class", "10"][..], "class 10 does not exist"),
        (&["--class", "1", "--cfg=-1"][..], "cfg must be"),
        (
            &["--class", "1", "--top-p", "0"][..],
            "top-p must lie in (0, 1]",
        ),
        (
            &["--class", "1", "--top-p", "1.5"][..],
            "top-p must lie in (0, 1]",
        ),
    ] {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_refused(&args, needle);
    }
    assert_refused(
        &[
            "generate",
            "--model",
            "/nonexistent/model",
            "--class",
            "1",
            "--out",
            out,
        ],
        "/nonexistent/model/config.json",
    );
    assert_refused(
        &["train", "vqvae", "--out", out, "--batch", "0"],
        "--batch and --steps must be at least 1",
    );
    assert_refused(
        &[
            "train",
            "vqvae",
            "--out",
            out,
            "--data",
            "/nonexistent",
            "--steps",
            "1",
        ],
        "apt-get install dataset-fashion-mnist",
    );
}

#[test]
fn convert_refuses_existing_output_and_bad_patch_nums() {
    let model = model_dir();
    let vae = common::fixture("vae_tiny.pth");
    let var_mini = common::fixture("var_mini.pth");
    let (vae, var_mini) = (vae.to_str().unwrap(), var_mini.to_str().unwrap());
    assert_refused(
        &[
            "convert",
            "--vae",
            vae,
            "--var",
            var_mini,
            "--patch-nums",
            "1,2,3,4",
            "--out",
            &model,
        ],
        "already exists",
    );
    let out = common::scratch("pn").join("m");
    let out_s = out.to_str().unwrap();
    assert_refused(
        &[
            "convert",
            "--vae",
            vae,
            "--var",
            var_mini,
            "--patch-nums",
            "1,2,x",
            "--out",
            out_s,
        ],
        "patch nums",
    );
    assert_refused(
        &[
            "convert",
            "--vae",
            vae,
            "--var",
            var_mini,
            "--patch-nums",
            "1,2,3,5",
            "--out",
            out_s,
        ],
        "pos_1LC",
    );
    assert!(!Path::new(out_s).exists());
}

#[test]
fn verify_passes_on_the_fixture_and_prints_one_line_per_check() {
    let model = model_dir();
    let o = var(&[
        "verify",
        "--model",
        &model,
        "--golden",
        common::fixture("golden_mini.safetensors").to_str().unwrap(),
        "--meta",
        common::fixture("golden_mini.json").to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, name) in lines.iter().zip(["decode", "encode", "forward", "greedy"]) {
        assert!(line.starts_with(name) && line.contains(" ok "), "{line}");
    }
}
