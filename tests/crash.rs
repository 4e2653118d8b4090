//! Crash injection: the `var` binary killed while it replaces a model directory, a picture or a
//! training checkpoint, at every step of the atomic writers (`VAR_CRASH_AT`, an abort with no
//! clean-up, as a kill) and at random moments (SIGKILL). Each time the target must be exactly
//! the old version or exactly the new one, and the next run must succeed and leave no stray
//! temporaries behind.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::fixture;

/// Every file below `dir` (relative name → bytes); `None` when `dir` does not exist.
fn snapshot(dir: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let name = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    if !dir.exists() {
        return None;
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    Some(out)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn var_cmd(args: &[String], crash_at: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_var"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    match crash_at {
        Some(point) => c.env("VAR_CRASH_AT", point),
        None => c.env_remove("VAR_CRASH_AT"),
    };
    c
}

fn run_ok(args: &[String]) {
    let o = var_cmd(args, None).output().unwrap();
    assert!(
        o.status.success(),
        "var {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `args` with the crash armed at `point` and checks that the process died there.
fn run_crashing(args: &[String], point: &str) {
    let o = var_cmd(args, Some(point)).output().unwrap();
    assert_eq!(
        o.status.signal(),
        Some(libc_sigabrt()),
        "var {args:?} with VAR_CRASH_AT={point} did not stop there: {:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

const fn libc_sigabrt() -> i32 {
    6 // SIGABRT on every Unix the project builds for
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A folder of 8 Fashion-MNIST images (classes 0 and 1) and a VQ-VAE trained on it for
/// three steps at 16 px with a checkpoint after every step, made once per test binary.
fn trained() -> &'static (PathBuf, PathBuf) {
    static RUN: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let root = common::scratch("crash-data");
        let data = root.join("data");
        run_ok(&strings(&[
            "export-fashion-mnist",
            "--out",
            path(&data),
            "--per-class",
            "4",
            "--classes",
            "0,1",
        ]));
        let vq = root.join("vqvae");
        run_ok(&train_vqvae(&data, &vq, false));
        (data, vq)
    })
}

fn train_vqvae(data: &Path, out: &Path, resume: bool) -> Vec<String> {
    let mut a = strings(&["train", "vqvae", "--data", path(data), "--out", path(out)]);
    if !resume {
        a.extend(strings(&["--image-size", "16", "--patch-nums", "1,2,4"]));
    }
    a.extend(strings(&[
        "--steps",
        "3",
        "--batch",
        "4",
        "--warmup",
        "100",
        "--checkpoint-secs",
        "0",
    ]));
    if resume {
        a.push("--resume".into());
    }
    a
}

/// The old version of the model directory is the reference fixture converted (16 px, four
/// scales, in shards), the new one a model trained here and packaged into the same place
/// (`var package` replaces its output, in three files).
#[test]
fn a_model_directory_killed_at_any_point_is_the_old_or_the_new_one() {
    let (data, vq) = trained();
    let root = common::scratch("crash-model");
    let tr = root.join("transformer");
    run_ok(&strings(&[
        "train",
        "var",
        "--data",
        path(data),
        "--vqvae",
        &format!("{}/checkpoint", path(vq)),
        "--out",
        path(&tr),
        "--steps",
        "1",
        "--batch",
        "4",
        "--warmup",
        "1",
        "--depth",
        "1",
        "--width",
        "32",
        "--heads",
        "2",
    ]));
    let work = root.join("work");
    let dir = work.join("model");
    let convert = strings(&[
        "convert",
        "--vae",
        fixture("vae_tiny.pth").to_str().unwrap(),
        "--var",
        fixture("var_mini.pth").to_str().unwrap(),
        "--patch-nums",
        "1,2,3,4",
        "--out",
        path(&dir),
    ]);
    let package = strings(&["package", "--run", path(&tr), "--out", path(&dir)]);
    let reset = || {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work).unwrap();
        run_ok(&convert);
        snapshot(&dir).unwrap()
    };
    run_ok(&package);
    let new = snapshot(&dir).unwrap();
    let old = reset();
    // `var convert` writes shards and a manifest, `var package` three files: a mix shows as
    // files of both.
    assert!(
        old.keys()
            .all(|k| k == "config.json" || !new.contains_key(k))
    );
    assert_ne!(old["config.json"], new["config.json"]);

    for (point, survives) in [
        ("dir:filled", &old),
        ("dir:synced", &old),
        ("dir:swapped", &new),
        ("dir:old-kept", &new),
    ] {
        reset();
        run_crashing(&package, point);
        assert!(
            snapshot(&dir).as_ref() == Some(survives),
            "killed at {point}, the directory is neither the old version nor the new"
        );
        assert!(
            names(&work).len() > 1,
            "{point}: the crash left its temporary"
        );
        run_ok(&package);
        assert!(
            snapshot(&dir) == Some(new.clone()),
            "the rerun after {point}"
        );
        assert_eq!(
            names(&work),
            ["model"],
            "the rerun after {point} left temporaries"
        );
    }

    // Killed at random moments (SIGKILL, no warning) over the time a packaging takes.
    let started = Instant::now();
    run_ok(&package);
    let duration = started.elapsed();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let (mut olds, mut news) = (0, 0);
    for _ in 0..12 {
        reset();
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = duration.mul_f64((state >> 11) as f64 / (1u64 << 53) as f64);
        let mut child = var_cmd(&package, None).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        match snapshot(&dir) {
            Some(s) if s == old => olds += 1,
            Some(s) if s == new => news += 1,
            other => panic!(
                "killed after {delay:?}: the directory holds {:?}",
                other.map(|s| s.into_keys().collect::<Vec<_>>())
            ),
        }
        run_ok(&package);
        assert_eq!(names(&work), ["model"], "the rerun left temporaries");
    }
    eprintln!("random kills over {duration:?}: {olds} left the old version, {news} the new one");
}

/// The same file name (class 3, seed 1) drawn at two guidance scales.
#[test]
fn a_picture_killed_at_any_point_is_the_old_or_the_new_one() {
    let root = common::scratch("crash-png");
    let dir = root.join("out");
    let png = dir.join("class3_seed1.png");
    let generate = |cfg: &str| {
        strings(&[
            "generate",
            "--class",
            "3",
            "--seed",
            "1",
            "--cfg",
            cfg,
            "--out",
            dir.to_str().unwrap(),
        ])
    };
    run_ok(&generate("1"));
    let old = std::fs::read(&png).unwrap();
    run_ok(&generate("4"));
    let new = std::fs::read(&png).unwrap();
    assert_ne!(old, new);
    for (point, survives) in [
        ("file:written", &old),
        ("file:synced", &old),
        ("file:renamed", &new),
    ] {
        run_ok(&generate("1"));
        run_crashing(&generate("4"), point);
        assert!(
            &std::fs::read(&png).unwrap() == survives,
            "killed at {point}: the picture is neither the old one nor the new"
        );
        run_ok(&generate("4"));
        assert_eq!(std::fs::read(&png).unwrap(), new);
        assert_eq!(
            names(&dir),
            ["class3_seed1.png"],
            "the rerun after {point} left temporaries"
        );
    }
}

/// The F32 tensors of a safetensors file.
fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, v)
        })
        .collect()
}

fn step_of(checkpoint: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoint.join("state.json")).unwrap()).unwrap();
    state["step"].as_u64().unwrap()
}

/// A VQ-VAE run checkpointing after every step, killed while it writes step 2's checkpoint:
/// the checkpoint is step 1's or step 2's whole, and resuming from it ends where an
/// uninterrupted run ends (a checkpoint mixing two steps would not).
#[test]
fn a_training_checkpoint_killed_at_any_point_is_the_old_or_the_new_one() {
    let (data, straight) = trained();
    let root = common::scratch("crash-train");
    let done = tensors(&straight.join("checkpoint/vqvae.safetensors"));

    // Step 1's checkpoint is the first (no previous version, so no "old-kept" step); step 2's
    // is the second "filled", "synced" and "swapped" and the first "old-kept".
    for (point, step) in [
        ("dir:filled:2", 1),
        ("dir:synced:2", 1),
        ("dir:swapped:2", 2),
        ("dir:old-kept:1", 2),
    ] {
        let out = root.join(point.replace(':', "-"));
        run_crashing(&train_vqvae(data, &out, false), point);
        let checkpoint = out.join("checkpoint");
        assert_eq!(step_of(&checkpoint), step, "killed at {point}");
        run_ok(&train_vqvae(data, &out, true));
        assert_eq!(step_of(&checkpoint), 3);
        let resumed = tensors(&checkpoint.join("vqvae.safetensors"));
        assert_eq!(resumed.len(), done.len());
        let worst = done
            .iter()
            .flat_map(|(name, a)| a.iter().zip(&resumed[name]).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "killed at {point} and resumed, the weights differ from an uninterrupted run's by {worst}"
        );
        let left: Vec<String> = names(&out)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{point}: temporaries left: {left:?}");
    }
}
