//! In the browser (headless Chromium, `wasm-pack test --headless --chrome`): the reference
//! fixture model, read from its official-format `.pth` files, reproduces the reference's
//! outputs on WebGPU (SwiftShader here) and on the CPU fallback. The cheap `mini` fixture
//! (4 scales, 64 px) keeps software WebGPU within minutes.
#![cfg(target_arch = "wasm32")]

use burn::tensor::Device;
use var_web::verify::{GoldenMeta, verify};
use var_web::weights::format::model_from_pth;
use var_web::weights::pth::PthFile;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const VAE: &[u8] = include_bytes!("fixtures/vae_tiny.pth");
const VAR: &[u8] = include_bytes!("fixtures/var_mini.pth");
const GOLDEN: &[u8] = include_bytes!("fixtures/golden_mini.safetensors");
const META: &str = include_str!("fixtures/golden_mini.json");

async fn parity_on(device: Device, what: &str) {
    let meta: GoldenMeta = serde_json::from_str(META).unwrap();
    let vae = PthFile::from_bytes(VAE.to_vec()).unwrap();
    let var = PthFile::from_bytes(VAR.to_vec()).unwrap();
    let model = model_from_pth(&vae, &var, &meta.patch_nums, "mini", &device).unwrap();
    let checks = verify(&model, GOLDEN, &meta).await.unwrap();
    for c in &checks {
        web_sys::console::log_1(&format!("{what}: {c}").into());
        assert!(c.passed(), "{what}: {c}");
    }
    assert_eq!(checks.len(), 4);
}

#[wasm_bindgen_test]
async fn fixture_matches_reference_on_webgpu() {
    let device = Device::wgpu_options()
        .init_async()
        .await
        .expect("a WebGPU adapter");
    parity_on(device, "webgpu").await;
}

#[wasm_bindgen_test]
async fn fixture_matches_reference_on_cpu_fallback() {
    parity_on(Device::flex(), "cpu").await;
}
