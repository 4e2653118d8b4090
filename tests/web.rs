//! In the browser (headless Chromium, `wasm-pack test --headless --chrome`), on WebGPU
//! (SwiftShader here) and on the CPU fallback:
//! - the reference fixture model, read from its official-format `.pth` files, reproduces the
//!   reference's outputs (the cheap `mini` fixture, 4 scales at 64 px, keeps software WebGPU
//!   within minutes);
//! - in-painting with the shipped model equals the native result (`tests/edit.rs` checks the
//!   same fixture natively);
//! - both again on our CPU kernels in WebAssembly SIMD (`kernels::cpu`, what the page's CPU
//!   path runs), and the kernels themselves against a plain product.
#![cfg(target_arch = "wasm32")]

use std::ops::ControlFlow;

use burn::tensor::Device;
use var_web::convert::model_from_pth;
use var_web::edit::inpaint;
use var_web::kernels::cpu::{CpuConv, CpuLinear};
use var_web::modeldir::{LoadOptions, ModelFiles, load_files};
use var_web::nn::Kernels;
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

async fn parity_on(device: Device, what: &str, kernels: Kernels) {
    let meta: GoldenMeta = serde_json::from_str(META).unwrap();
    let vae = PthFile::from_bytes(VAE.to_vec()).unwrap();
    let var = PthFile::from_bytes(VAR.to_vec()).unwrap();
    let model = model_from_pth(&vae, &var, &meta.patch_nums, "mini", &device, kernels).unwrap();
    assert_eq!(
        model.uses_cpu_kernels(),
        kernels == Kernels::CpuPacked,
        "{what}"
    );
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
    parity_on(device, "webgpu", Kernels::Burn).await;
}

#[wasm_bindgen_test]
async fn fixture_matches_reference_on_cpu_fallback() {
    parity_on(Device::flex(), "cpu", Kernels::Burn).await;
}

#[wasm_bindgen_test]
async fn fixture_matches_reference_on_the_cpu_kernels() {
    parity_on(Device::flex(), "cpu kernels", Kernels::CpuPacked).await;
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

async fn inpainting_on(device: Device, what: &str, options: LoadOptions) {
    let f: InpaintFixture = serde_json::from_str(INPAINT).unwrap();
    let files = ModelFiles {
        config_json: SHIPPED_CONFIG,
        vqvae: SHIPPED_VQVAE,
        var: SHIPPED_VAR,
    };
    let model = load_files(&files, &device, &options).unwrap();
    let on_cpu = !var_web::kernels::is_gpu(&device);
    let packed = on_cpu && options.kernels == Kernels::CpuPacked;
    assert_eq!(model.uses_cpu_kernels(), packed, "{what}");
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
    inpainting_on(device, "webgpu", LoadOptions::default()).await;
}

#[wasm_bindgen_test]
async fn inpainting_matches_native_on_cpu_fallback() {
    inpainting_on(Device::flex(), "cpu", LoadOptions::default()).await;
}

#[wasm_bindgen_test]
async fn inpainting_matches_native_on_the_cpu_kernels() {
    inpainting_on(Device::flex(), "cpu kernels", LoadOptions::inference()).await;
}

/// A deterministic value in [-1, 1).
fn value(i: usize, salt: usize) -> f32 {
    let h = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 2001;
    h as f32 / 1000.0 - 1.0
}

/// Every element of `got` within f32 accumulation error of `want` over `k` products.
fn assert_close(got: &[f32], want: &[f64], k: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-6 * k as f64,
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

#[wasm_bindgen_test]
fn the_simd128_linear_kernel_matches_a_plain_product_at_every_row_count() {
    assert!(CpuLinear::supported(), "this build has WebAssembly SIMD");
    // d_out = 200 leaves a partial last panel; the rows cover partial and full tiles.
    let (k, n) = (96, 200);
    let w: Vec<f32> = (0..k * n).map(|i| value(i, 1)).collect();
    let b: Vec<f32> = (0..n).map(|i| value(i, 2)).collect();
    let linear = CpuLinear::from_f32(&w, k, n, Some(b.clone()));
    for rows in [1, 2, 5, 6, 7, 13, 64] {
        let x: Vec<f32> = (0..rows * k).map(|i| value(i, 3 + rows)).collect();
        let want: Vec<f64> = (0..rows * n)
            .map(|o| {
                let (r, j) = (o / n, o % n);
                let dot: f64 = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + j]))
                    .sum();
                dot + f64::from(b[j])
            })
            .collect();
        assert_close(&linear.forward(&x, rows), &want, k, &format!("{rows} rows"));
    }
}

#[wasm_bindgen_test]
fn the_simd128_convolution_matches_a_plain_one() {
    // 3x3, stride 1, padding 1, 5 -> 7 channels on a 6x5 image (a half tile on the right for
    // Winograd), batch 2; by Winograd (what `new` picks for this shape) and direct.
    let (c_in, c_out, h, wd, batch) = (5, 7, 6, 5, 2);
    let weight: Vec<f32> = (0..c_out * c_in * 9).map(|i| value(i, 4)).collect();
    let bias: Vec<f32> = (0..c_out).map(|i| value(i, 5)).collect();
    let b = Some(bias.clone());
    let convs = [
        CpuConv::new(&weight, c_in, c_out, 3, 1, [1, 1, 1, 1], b.clone()),
        CpuConv::direct(&weight, c_in, c_out, 3, 1, [1, 1, 1, 1], b),
    ];
    assert_eq!(convs[0].algorithm(), "winograd");
    let x: Vec<f32> = (0..batch * c_in * h * wd).map(|i| value(i, 6)).collect();
    let mut want = vec![0f64; batch * c_out * h * wd];
    for b in 0..batch {
        for o in 0..c_out {
            for y in 0..h {
                for xx in 0..wd {
                    let mut sum = f64::from(bias[o]);
                    for c in 0..c_in {
                        for (dy, dx) in (0..9).map(|t| (t / 3, t % 3)) {
                            let (sy, sx) = (y + dy, xx + dx);
                            if sy < 1 || sx < 1 || sy > h || sx > wd {
                                continue;
                            }
                            let px = x[((b * c_in + c) * h + sy - 1) * wd + sx - 1];
                            let wt = weight[((o * c_in + c) * 3 + dy) * 3 + dx];
                            sum += f64::from(px) * f64::from(wt);
                        }
                    }
                    want[((b * c_out + o) * h + y) * wd + xx] = sum;
                }
            }
        }
    }
    for conv in &convs {
        assert_eq!(conv.output_size(h, wd), (h, wd));
        let what = format!("3x3 conv, {}", conv.algorithm());
        assert_close(&conv.forward(&x, batch, h, wd), &want, c_in * 9, &what);
    }
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

#[wasm_bindgen_test]
async fn attention_and_gelu_kernels_match_the_burn_ops_on_webgpu() {
    use var_web::kernels::activation::gelu_tanh_error;
    use var_web::kernels::attention::{ATTENTION_TEST_SHAPES, attention_kernels_error};
    let device = webgpu().await;
    for (i, &shape) in ATTENTION_TEST_SHAPES.iter().enumerate() {
        let err = attention_kernels_error(&device, shape, i as u64)
            .await
            .unwrap();
        assert!(err < 1e-5, "attention {shape:?}: relative error {err}");
    }
    let err = gelu_tanh_error(&device, 100_003).await.unwrap();
    assert!(err < 1e-5, "GELU: relative error {err}");
}

#[wasm_bindgen_test]
async fn adaln_kernels_match_the_burn_ops_on_webgpu() {
    use var_web::kernels::adaln::{
        MODULATED_LN_TEST_SHAPES, gated_residual_error, modulated_layer_norm_error,
    };
    let device = webgpu().await;
    for (i, &shape) in MODULATED_LN_TEST_SHAPES.iter().enumerate() {
        let err = modulated_layer_norm_error(&device, shape, i as u64)
            .await
            .unwrap();
        assert!(err < 1e-5, "layer norm {shape:?}: relative error {err}");
        let err = gated_residual_error(&device, shape, i as u64)
            .await
            .unwrap();
        assert!(err < 1e-6, "gated residual {shape:?}: relative error {err}");
    }
}

/// `decodeLatent` (what the preview worker runs) on f̂ read back mid-run gives the bytes the
/// run's own full-decode preview gives, and a latent of the wrong size is refused in a sentence.
#[wasm_bindgen_test]
async fn a_latent_handed_to_the_preview_worker_decodes_to_the_runs_own_preview() {
    use var_web::generate::{Generation, ScalePicture};
    use var_web::web::VarModel;
    let files = ModelFiles {
        config_json: SHIPPED_CONFIG,
        vqvae: SHIPPED_VQVAE,
        var: SHIPPED_VAR,
    };
    let model = load_files(&files, &Device::flex(), &LoadOptions::default()).unwrap();
    let handed = VarModel::load(
        SHIPPED_CONFIG.to_string(),
        SHIPPED_VQVAE.to_vec(),
        SHIPPED_VAR.to_vec(),
        "cpu".to_string(),
    )
    .await
    .unwrap();
    let params = model.config.sampling.with_seed(3);
    let mut run = Generation::new(&model, &[6], &params, None).await.unwrap();
    // The second scale: f̂ already holds two token maps.
    run.step().await.unwrap().unwrap();
    let step = run.step().await.unwrap().unwrap();
    assert_eq!(run.picture_for(step.si, step.patch), ScalePicture::Full);
    let f_hat = read_f32(run.f_hat().clone()).await.unwrap();
    // The full decode (the one-image preview, 32 px) and a batch's preview at the token-map
    // size (2x2 latent positions, 8 px): the handed-over RGBA against the run's own picture.
    for (side, size) in [(8, model.config.image_size), (2, 8)] {
        let own = read_f32(run.preview(side)).await.unwrap();
        let rgba = handed
            .decode_latent(f_hat.clone(), 1, side as u32)
            .await
            .unwrap()
            .to_vec();
        assert_eq!(rgba.len(), size * size * 4, "side {side}");
        let rgb: Vec<u8> = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        assert_eq!(
            rgb,
            Model::to_rgb8(&own, 1, size)[0],
            "side {side}: the handed-over decode is the run's own preview"
        );
    }
    let error = handed
        .decode_latent(f_hat[1..].to_vec(), 1, 8)
        .await
        .expect_err("a latent one value short is refused");
    let message = js_sys::Reflect::get(&error, &"message".into())
        .unwrap()
        .as_string()
        .unwrap();
    assert!(message.contains("not 1 of them"), "{message}");
}
