//! Reduced-precision model directories: int8 files meet the size target, load into the one
//! model implementation, and follow the f32 model (teacher-forced top-1 agreement ≥ 98%).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::PathBuf;

use burn::tensor::Device;
use var_web::agreement::compare;
use var_web::config::Storage;
use var_web::convert::quantize_dir;
use var_web::modeldir::VAR_FILE;
use var_web::modeldir::{self, LoadOptions};

fn size(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join(VAR_FILE)).unwrap().len()
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(var_web::DEFAULT_MODEL_DIR)
}

#[test]
fn int8_is_a_quarter_of_f32_and_agrees_with_it() {
    for (name, original, sequences) in [
        ("fixture", common::fixture_model_dir("mini"), 32),
        ("shipped", shipped(), 50),
    ] {
        let out = common::scratch(&format!("int8-{name}")).join("model");
        let config = quantize_dir(&original, Storage::Int8, 0, &out).unwrap();
        assert_eq!(config.storage, Storage::Int8);
        let ratio = size(&out) as f64 / size(&original) as f64;
        assert!(
            ratio <= 0.27,
            "{name}: int8 transformer file is {ratio:.3}x the f32 one"
        );
        let device = Device::flex();
        let (a, b) = (
            modeldir::load(&original, &device, &LoadOptions::default()).unwrap(),
            modeldir::load(&out, &device, &LoadOptions::default()).unwrap(),
        );
        let r = pollster::block_on(compare(&a, &b, sequences, 1)).unwrap();
        assert!(r.top1 >= 0.98, "{name}: top-1 agreement {:.4}", r.top1);
        assert!(r.kl < 1e-3, "{name}: KL {}", r.kl);
    }
}

#[test]
fn f16_halves_every_file_and_quantized_models_are_not_requantized() {
    let original = common::fixture_model_dir("mini");
    let out = common::scratch("f16").join("model");
    quantize_dir(&original, Storage::F16, 0, &out).unwrap();
    let ratio = size(&out) as f64 / size(&original) as f64;
    assert!((0.49..0.52).contains(&ratio), "f16 ratio {ratio:.3}");
    let e = quantize_dir(&out, Storage::Int8, 0, &common::scratch("again").join("m"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already stored as F16"), "{e}");
    assert!(
        "int4"
            .parse::<Storage>()
            .unwrap_err()
            .to_string()
            .contains("f32, f16 or int8")
    );
}

#[test]
fn an_int8_file_without_its_scales_is_refused_by_name() {
    let original = common::fixture_model_dir("mini");
    let out = common::scratch("int8-broken").join("model");
    quantize_dir(&original, Storage::Int8, 0, &out).unwrap();
    // Rewrite var.safetensors without one tensor's scales.
    let bytes = std::fs::read(out.join(VAR_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dropped = "head.weight.scales";
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(k, _)| k != dropped)
        .collect();
    let rewritten = safetensors::serialize(kept, None).unwrap();
    std::fs::write(out.join(VAR_FILE), rewritten).unwrap();
    let e = modeldir::load(&out, &Device::flex(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.weight") && e.contains("scales"), "{e}");
}
