//! Training on a folder of one's own images, end to end through the `var` binary: a folder
//! written from Fashion-MNIST (with a corrupt file in it), the VQ-VAE at 16 px with its own
//! scale schedule, the transformer on its tokens, a resume refused when the folder changed,
//! and the packaged model generating under the folder's class names.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{var_ok as ok, var_refused as refused};

#[test]
fn a_folder_of_images_trains_packages_and_generates() {
    let root = common::scratch("train-folder");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (data, vq, tr, model, out) = (
        root.join("data"),
        root.join("vqvae-run"),
        root.join("var-run"),
        root.join("model"),
        root.join("samples"),
    );
    let (data, vq, tr, model, out) = (s(&data), s(&vq), s(&tr), s(&model), s(&out));
    let said = ok(&[
        "export-fashion-mnist",
        "--out",
        &data,
        "--per-class",
        "6",
        "--classes",
        "0,1,7",
    ]);
    assert!(said.contains("wrote 18 images"), "{said}");
    std::fs::write(root.join("data/Trouser/broken.png"), b"not a png").unwrap();

    let vqvae_args = [
        "train",
        "vqvae",
        "--data",
        &data,
        "--out",
        &vq,
        "--image-size",
        "16",
        "--patch-nums",
        "1,2,4",
        "--steps",
        "2",
        "--batch",
        "4",
        "--warmup",
        "1",
    ];
    let said = ok(&vqvae_args);
    assert!(
        said.contains("folder: 3 classes, 15 training and 3 test images at 16 px; 1 files skipped"),
        "{said}"
    );
    let config = std::fs::read_to_string(root.join("vqvae-run/checkpoint/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["image_size"], 16);
    assert_eq!(config["patch_nums"], serde_json::json!([1, 2, 4]));
    assert_eq!(config["vqvae"]["ch_mult"], serde_json::json!([1, 1, 2]));
    assert_eq!(
        config["class_names"],
        serde_json::json!(["Sneaker", "T-shirt-top", "Trouser"])
    );
    assert_eq!(config["fit"]["rule"], "crop");
    assert_eq!(config["name"], "data", "a folder's model is named after it");
    let data_txt = std::fs::read_to_string(root.join("vqvae-run/data.txt")).unwrap();
    assert!(data_txt.contains("broken.png: not an image"), "{data_txt}");
    let split = std::fs::read_to_string(root.join("vqvae-run/split.csv")).unwrap();
    assert_eq!(split.lines().filter(|l| l.starts_with("test,")).count(), 3);

    let checkpoint = format!("{vq}/checkpoint");
    let common_args = [
        "train", "var", "--data", &data, "--out", &tr, "--batch", "4", "--warmup", "1",
    ];
    let start: Vec<&str> = common_args
        .iter()
        .copied()
        .chain([
            "--vqvae",
            &checkpoint,
            "--steps",
            "2",
            "--depth",
            "1",
            "--width",
            "32",
            "--heads",
            "2",
        ])
        .collect();
    let said = ok(&start);
    assert!(said.contains("folder: 3 classes"), "{said}");

    // Another image in the folder: the run does not resume on it.
    let any = std::fs::read_dir(root.join("data/Sneaker"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(any, root.join("data/Sneaker/copy.png")).unwrap();
    let resume: Vec<&str> = common_args
        .iter()
        .copied()
        .chain(["--resume", "--steps", "3"])
        .collect();
    refused(&resume, "other images than the run was trained on");

    ok(&["package", "--run", &tr, "--out", &model]);
    ok(&[
        "generate", "--model", &model, "--class", "2", "--count", "2", "--out", &out,
    ]);
    let png = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a PNG was written");
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (16, 16));
    refused(
        &["generate", "--model", &model, "--class", "3", "--out", &out],
        "class 3",
    );
}

#[test]
fn training_devices_that_cannot_start_say_why() {
    let out = common::scratch("train-cuda").join("run");
    let out = out.to_str().unwrap();
    #[cfg(not(feature = "cuda"))]
    refused(
        &[
            "train", "--device", "cuda", "vqvae", "--out", out, "--steps", "1",
        ],
        "built without burn's CUDA backend",
    );
    let bad: [(&[&str], &str); 3] = [
        (&["--device", "tpu"], "invalid value 'tpu'"),
        (
            &["--image-size", "30", "--steps", "1"],
            "not a multiple of 4",
        ),
        (
            &["--image-size", "48", "--patch-nums", "1,2,5"],
            "power of two",
        ),
    ];
    for (extra, needle) in bad {
        let mut args = vec!["train", "vqvae", "--out", out];
        args.extend_from_slice(extra);
        refused(&args, needle);
    }
}
