//! Our WGSL kernels against plain burn ops on random inputs, natively on wgpu over Vulkan
//! (lavapipe from Debian's mesa-vulkan-drivers on machines without a GPU). `tests/web.rs` runs
//! the same checks in headless Chromium on WebGPU.
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuBackend;
use var_web::kernels::{INT8_TEST_SHAPES, int8_matmul_error, is_gpu};

#[test]
fn int8_matmul_matches_the_burn_reference_on_wgpu() {
    let device = Device::wgpu_options()
        .graphics_api(WgpuBackend::Vulkan)
        .init()
        .expect("a Vulkan adapter (lavapipe: apt-get install mesa-vulkan-drivers)");
    assert!(is_gpu(&device), "the kernel path needs a wgpu device");
    assert!(!is_gpu(&Device::flex()));
    for (i, &(m, k, n)) in INT8_TEST_SHAPES.iter().enumerate() {
        let err = pollster::block_on(int8_matmul_error(&device, m, k, n, i as u64)).unwrap();
        assert!(err < 1e-5, "[{m}x{k}] x [{k}x{n}]: relative error {err}");
    }
}
