//! In the browser (headless Chromium, `wasm-pack test --headless --chrome`), on WebGPU
//! (SwiftShader here) and on the CPU fallback:
//! - the reference fixture model, read from its official-format `.pth` files, reproduces the
//!   reference's outputs (the cheap `mini` fixture, 4 scales at 64 px, keeps software WebGPU
//!   within minutes);
//! - in-painting with the shipped model equals the native result (`tests/edit.rs` checks the
//!   same fixture natively).
#![cfg(target_arch = "wasm32")]

use std::ops::ControlFlow;

use burn::tensor::Device;
use var_web::convert::model_from_pth;
use var_web::edit::inpaint;
use var_web::modeldir::{LoadOptions, ModelFiles, load_files};
use var_web::readback::read_f32;
use var_web::verify::{GoldenMeta, verify};
use var_web::weights::pth::PthFile;
use var_web::{Model, SamplingParams};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const VAE: &[u8] = include_bytes!("fixtures/vae_tiny.pth");
const VAR: &[u8] = include_bytes!("fixtures/var_mini.pth");
const GOLDEN: &[u8] = include_bytes!("fixtures/golden_mini.safetensors");
const META: &str = include_str!("fixtures/golden_mini.json");
const SHIPPED_CONFIG: &str = include_str!("../www/models/fashion-mnist/config.json");
const SHIPPED_VQVAE: &[u8] = include_bytes!("../www/models/fashion-mnist/vqvae.safetensors");
const SHIPPED_VAR: &[u8] = include_bytes!("../www/models/fashion-mnist/var.safetensors");
const INPAINT: &str = include_str!("fixtures/inpaint_shipped.json");

thread_local! {
    /// burn's wgpu runtime is initialised once per page; every test here shares the page.
    static WEBGPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

async fn webgpu() -> Device {
    if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
        return device;
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .expect("a WebGPU adapter");
    WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
    device
}

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
    let device = webgpu().await;
    parity_on(device, "webgpu").await;
}

#[wasm_bindgen_test]
async fn fixture_matches_reference_on_cpu_fallback() {
    parity_on(Device::flex(), "cpu").await;
}

#[derive(serde::Deserialize)]
struct InpaintFixture {
    source_rgb: Vec<u8>,
    generate_rect: [usize; 4],
    label: usize,
    seed: u64,
    tokens: Vec<Vec<u32>>,
    image_rgb: Vec<u8>,
}

async fn inpainting_on(device: Device, what: &str) {
    let f: InpaintFixture = serde_json::from_str(INPAINT).unwrap();
    let files = ModelFiles {
        config_json: SHIPPED_CONFIG,
        vqvae: SHIPPED_VQVAE,
        var: SHIPPED_VAR,
    };
    let model = load_files(&files, &device, &LoadOptions::default()).unwrap();
    let size = model.config.image_size;
    let [y0, y1, x0, x1] = f.generate_rect;
    let painted: Vec<bool> = (0..size * size)
        .map(|p| (y0..y1).contains(&(p / size)) && (x0..x1).contains(&(p % size)))
        .collect();
    let params = SamplingParams {
        top_k: 1,
        ..model.config.sampling.with_seed(f.seed)
    };
    let done = inpaint(&model, &f.source_rgb, &painted, f.label, &params, |_| {
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(
        done.tokens, f.tokens,
        "{what}: tokens differ from the native run"
    );
    let pixels = read_f32(done.image).await.unwrap();
    let rgb = Model::to_rgb8(&pixels, 1, size).remove(0);
    let worst = rgb
        .iter()
        .zip(&f.image_rgb)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    web_sys::console::log_1(
        &format!("{what}: in-painting tokens equal, pixels within {worst}/255").into(),
    );
    assert!(
        worst <= 2,
        "{what}: pixels differ from the native run by {worst} levels"
    );
}

#[wasm_bindgen_test]
async fn inpainting_matches_native_on_webgpu() {
    let device = webgpu().await;
    inpainting_on(device, "webgpu").await;
}

#[wasm_bindgen_test]
async fn inpainting_matches_native_on_cpu_fallback() {
    inpainting_on(Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn int8_matmul_kernel_matches_the_burn_reference_on_webgpu() {
    let device = webgpu().await;
    assert!(var_web::kernels::is_gpu(&device));
    for (i, &(m, k, n)) in var_web::kernels::int8::INT8_TEST_SHAPES.iter().enumerate() {
        let err = var_web::kernels::int8::int8_matmul_error(&device, m, k, n, i as u64)
            .await
            .unwrap();
        assert!(err < 1e-5, "[{m}x{k}] x [{k}x{n}]: relative error {err}");
    }
}
