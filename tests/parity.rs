//! Parity with the reference implementation on its own fixtures (seeded random weights in the
//! official checkpoint format): converted through `convert_pth`, loaded back from our model
//! directory, and checked on decode, encode, teacher-forced logits and greedy CFG generation.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::Device;
use var_web::modeldir::{self, LoadOptions};
use var_web::verify::{GoldenMeta, verify};

fn run_parity(name: &str, cpu_kernels: bool) {
    let options = if cpu_kernels {
        LoadOptions::inference()
    } else {
        LoadOptions::default()
    };
    let dir = common::fixture_model_dir(name);
    let model = modeldir::load(&dir, &Device::flex(), &options).unwrap();
    if cpu_kernels && !model.uses_cpu_kernels() {
        eprintln!("skipped: this CPU has no AVX2+FMA or AVX-512 for our kernels");
        return;
    }
    let meta: GoldenMeta = serde_json::from_str(
        &std::fs::read_to_string(common::fixture(&format!("golden_{name}.json"))).unwrap(),
    )
    .unwrap();
    let golden = std::fs::read(common::fixture(&format!("golden_{name}.safetensors"))).unwrap();
    let checks = pollster::block_on(verify(&model, &golden, &meta)).unwrap();
    for c in &checks {
        println!("{c}");
    }
    assert_eq!(checks.len(), 4);
    for c in &checks {
        assert!(c.passed(), "{c}");
    }
}

#[test]
fn mini_fixture_matches_reference() {
    run_parity("mini", false);
}

/// The same checks with the transformer's Linear layers on our packed CPU kernels
/// (`src/kernels/cpu/`), as `var generate` runs them.
#[test]
fn mini_fixture_matches_reference_on_the_cpu_kernels() {
    run_parity("mini", true);
}

#[test]
fn tiny_fixture_matches_reference() {
    run_parity("tiny", false);
}

#[test]
fn tiny_fixture_matches_reference_on_the_cpu_kernels() {
    run_parity("tiny", true);
}
