//! The `var` binary end to end: determinism of `generate`, and one clear sentence plus a
//! non-zero exit for bad input.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{var, var_refused as assert_refused};

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
    assert_eq!(image::guess_format(&a[0]).unwrap(), image::ImageFormat::Png);
    let decoded = image::load_from_memory(&a[0]).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (64, 64));
}

#[test]
fn generate_finds_the_shipped_model_from_any_directory() {
    let dir = common::scratch("elsewhere");
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_var"))
        .current_dir(&dir)
        .args(["generate", "--class", "7", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(out.join("class7_seed0.png")).unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 32);
}

#[test]
fn smooth_sampling_runs_and_is_deterministic() {
    let args = ["--class", "0", "--seed", "5", "--smooth"];
    let [a, b] = generate_twice("smooth", &args, &["class0_seed5.png"]);
    assert_eq!(a, b);
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

/// Writes a `w`x`h` greyscale PNG whose pixel (x, y) is `f(x, y)`.
fn grey_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

#[test]
fn inpaint_writes_the_edit_and_its_sheet_and_refuses_bad_masks() {
    let dir = common::scratch("inpaint");
    let image = dir.join("source.png");
    // 48x32: the centred 32x32 square (columns 8..40) holds a bright block on black.
    grey_png(&image, 48, 32, |x, y| {
        if (16..32).contains(&x) && (6..26).contains(&y) {
            220
        } else {
            0
        }
    });
    let mask = dir.join("mask.png");
    grey_png(
        &mask,
        48,
        32,
        |x, y| if x >= 24 && y < 16 { 255 } else { 0 },
    );
    let (image_s, mask_s) = (image.to_str().unwrap(), mask.to_str().unwrap());
    let out = dir.join("out.png");
    let sheet = dir.join("sheet.png");
    // The same edit (class 1, seed 2) with `extra` options.
    let edit = |extra: &[&str]| {
        let mut args = vec![
            "inpaint", "--image", image_s, "--mask", mask_s, "--class", "1", "--seed", "2",
        ];
        args.extend_from_slice(extra);
        var(&args)
    };
    let o = edit(&[
        "--out",
        out.to_str().unwrap(),
        "--sheet",
        sheet.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The shipped model records Fashion-MNIST's fit: the square goes to 28 px on 32.
    assert!(
        stderr(&o).contains(
            "48x32, cropped to its centred 32x32 square and resized to 28x28 on a 32x32 black canvas (2 px border)"
        ),
        "{}",
        stderr(&o)
    );
    let size = |p: &Path| image::image_dimensions(p).unwrap();
    assert_eq!(
        size(&out),
        (48, 32),
        "the edit comes back in the source's size"
    );
    let (edited, source) = (
        image::open(&out).unwrap().to_rgb8(),
        image::open(&image).unwrap().to_rgb8(),
    );
    for (x, y, px) in edited.enumerate_pixels() {
        if !(8..40).contains(&x) {
            assert_eq!(
                px,
                source.get_pixel(x, y),
                "({x}, {y}) is outside what the model saw"
            );
        }
    }
    assert_eq!(size(&sheet).1, 132, "four 128 px panels with 2 px gutters");
    assert_eq!(size(&sheet).0, 4 * 130 + 2);
    let at_model = dir.join("model-size.png");
    let o = edit(&["--model-size", "--out", at_model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        size(&at_model),
        (32, 32),
        "--model-size: as the model made it"
    );

    // A 28x28 source, Fashion-MNIST's own size: it comes back 28x28 and aligned, and with
    // --keep-original every pixel 3 px or more from the mask is the source's, byte for byte;
    // inside the mask it is the edit's.
    let small_src = dir.join("fashion.png");
    grey_png(&small_src, 28, 28, |x, y| ((x * 9 + y * 5) % 256) as u8);
    let small_mask = dir.join("fashion-mask.png");
    grey_png(
        &small_mask,
        28,
        28,
        |x, y| if x >= 14 && y < 14 { 255 } else { 0 },
    );
    let (plain, kept) = (dir.join("plain28.png"), dir.join("kept28.png"));
    for (extra, target) in [(None, &plain), (Some("--keep-original"), &kept)] {
        let mut args = vec![
            "inpaint",
            "--image",
            small_src.to_str().unwrap(),
            "--mask",
            small_mask.to_str().unwrap(),
            "--class",
            "1",
            "--seed",
            "2",
            "--out",
            target.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = var(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(size(target), (28, 28));
        assert_eq!(extra.is_some(), stderr(&o).contains("a 2 px seam"));
    }
    let (kept, plain) = (
        image::open(&kept).unwrap().to_rgb8(),
        image::open(&plain).unwrap().to_rgb8(),
    );
    let source = image::open(&small_src).unwrap().to_rgb8();
    let (mut beyond, mut inside) = (0, 0);
    for (x, y, px) in kept.enumerate_pixels() {
        if x < 11 || y > 16 {
            assert_eq!(
                px,
                source.get_pixel(x, y),
                "({x}, {y}) is the source's pixel"
            );
            beyond += 1;
        } else if x >= 14 && y < 14 {
            assert_eq!(px, plain.get_pixel(x, y), "({x}, {y}) is the edit's pixel");
            inside += 1;
        }
    }
    assert_eq!((beyond, inside), (11 * 28 + 11 * 17, 14 * 14));
    // Without it the whole image is the decoder's: not the source byte for byte.
    assert!(
        plain
            .enumerate_pixels()
            .any(|(x, y, p)| p != source.get_pixel(x, y))
    );

    let empty = dir.join("empty.png");
    grey_png(&empty, 48, 32, |_, _| 0);
    let missing = dir.join("none.png");
    let refused = [
        (vec!["--mask", empty.to_str().unwrap()], "the mask is empty"),
        (vec!["--mask", image_s, "--invert"], ""), // keeps only the block: valid
        (
            vec!["--mask", mask_s, "--class", "10"],
            "class 10 does not exist",
        ),
        (vec!["--mask", missing.to_str().unwrap()], "none.png"),
    ];
    for (extra, needle) in refused {
        let target = dir.join("refused.png");
        let mut args = vec![
            "inpaint",
            "--image",
            image_s,
            "--out",
            target.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let o = var(&args);
        if needle.is_empty() {
            assert!(o.status.success(), "{}", stderr(&o));
            std::fs::remove_file(&target).unwrap();
        } else {
            assert!(!o.status.success(), "{extra:?} should fail");
            let e = stderr(&o);
            assert!(
                e.contains(needle) && e.lines().count() <= 3,
                "{extra:?}: {e}"
            );
            assert!(!target.exists(), "nothing is written on failure");
        }
    }
    let small = dir.join("small.png");
    grey_png(&small, 32, 32, |_, _| 255);
    assert_refused(
        &[
            "inpaint",
            "--image",
            image_s,
            "--mask",
            small.to_str().unwrap(),
            "--out",
            "x.png",
        ],
        "the mask is 32x32 but the image is 48x32",
    );
}

#[test]
fn convert_quantize_int8_writes_a_model_that_generates() {
    let vae = common::fixture("vae_tiny.pth");
    let var_mini = common::fixture("var_mini.pth");
    let out = common::scratch("int8").join("m");
    let out_s = out.to_str().unwrap();
    let args = [
        "convert",
        "--vae",
        vae.to_str().unwrap(),
        "--var",
        var_mini.to_str().unwrap(),
        "--patch-nums",
        "1,2,3,4",
        "--precision",
        "int8",
        "--out",
        out_s,
    ];
    let o = var(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"storage\": \"int8\""), "{config}");
    let images = common::scratch("int8-gen");
    let o = var(&[
        "generate",
        "--model",
        out_s,
        "--class",
        "1",
        "--out",
        images.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(images.join("class1_seed0.png").exists());
    let bad = common::scratch("q4").join("m");
    let mut args = args;
    args[8] = "int4";
    args[10] = bad.to_str().unwrap();
    assert_refused(&args, "unknown precision 'int4'");
}

#[test]
fn bench_compares_precisions_side_by_side_and_writes_json() {
    let dir = common::scratch("bench");
    let json = dir.join("bench.json");
    let o = var(&[
        "bench",
        "--model",
        &model_dir(),
        "--precision",
        "f32,int8",
        "--runs",
        "1",
        "--top-k",
        "20",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("f32 burn-flex CPU") && table.contains("int8 burn-flex CPU"),
        "{table}"
    );
    let reports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    for (report, storage) in reports.iter().zip(["f32", "int8"]) {
        assert_eq!(report["storage"], storage);
        let scales = report["scales"].as_array().unwrap();
        assert_eq!(scales.len(), 4, "the fixture model has 4 scales");
        let gflop: f64 = scales.iter().map(|s| s["gflop"].as_f64().unwrap()).sum();
        let total = report["transformer_gflop"].as_f64().unwrap();
        assert!(gflop > 0.0 && (gflop - total).abs() < 1e-9 * total);
        let seconds: f64 = scales.iter().map(|s| s["seconds"].as_f64().unwrap()).sum();
        assert!(seconds > 0.0 && seconds <= report["total_seconds"].as_f64().unwrap());
        assert!(report["gpu_memory"].is_null(), "no GPU report on the CPU");
    }
    assert_refused(
        &["bench", "--model", &model_dir(), "--precision", "int4"],
        "int4",
    );
}

#[test]
fn bench_reads_sharded_and_unsharded_model_directories() {
    use var_web::config::Storage;
    let whole = common::convert_mini("bench-whole", Storage::F32, None);
    let sharded = common::convert_mini("bench-sharded", Storage::F32, Some(64 << 10));
    assert!(sharded.join("manifest.json").is_file());
    let dir = common::scratch("bench-dirs");
    let report = |model: &Path, name: &str| -> serde_json::Value {
        let json = dir.join(name);
        let o = var(&[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--precision",
            "f32,int8",
            "--runs",
            "1",
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}: {}", model.display(), stderr(&o));
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
    };
    let (a, b) = (
        report(&whole, "whole.json"),
        report(&sharded, "sharded.json"),
    );
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["storage"], y["storage"]);
        assert_eq!(x["transformer_gflop"], y["transformer_gflop"]);
        assert_eq!(x["scales"].as_array().unwrap().len(), 4);
        assert_eq!(y["scales"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn random_checkpoint_refuses_a_depth_that_is_not_official() {
    let out = common::scratch("random-ckpt");
    assert_refused(
        &[
            "random-checkpoint",
            "--depth",
            "17",
            "--out",
            out.to_str().unwrap(),
        ],
        "there is no official VAR-d17",
    );
    assert!(!out.join("var_d17.pth").exists());
}

/// `var convert` prints the fingerprint the page shows: the SHA-256 of the manifest it wrote.
#[test]
fn convert_prints_the_fingerprint_of_its_manifest() {
    let out = common::scratch("fingerprint").join("int8");
    let o = var(&[
        "convert",
        "--vae",
        common::fixture("vae_tiny.pth").to_str().unwrap(),
        "--var",
        common::fixture("var_mini.pth").to_str().unwrap(),
        "--patch-nums",
        "1,2,3,4",
        "--precision",
        "int8",
        "--shard-mib",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    let expected = var_web::weights::shards::sha256_hex(&manifest);
    assert!(
        stdout.contains(&format!("fingerprint {expected} ")),
        "{stdout}"
    );
}
