//! The native devices beyond the CPU, opened once per process with one sentence when they
//! cannot start: wgpu (Vulkan on Linux, lavapipe without a GPU) and CUDA where this build has
//! burn's CUDA backend (`--features cuda`).

use burn::tensor::Device;

use crate::error::{Result, VarError};

/// The wgpu device, opened once per process (burn keeps one runtime per device).
pub fn wgpu() -> Result<Device> {
    static WGPU: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    WGPU.get_or_init(|| {
        let options = Device::wgpu_options();
        // burn's WGSL path on Linux is Vulkan (its SPIR-V compiler rejects our WGSL
        // templates; docs/burn-custom-kernels.md).
        #[cfg(target_os = "linux")]
        let options = options.graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan);
        options.init().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| {
        VarError::InvalidArgument(format!(
            "no wgpu device: {e} (on Linux without a GPU, install mesa-vulkan-drivers for lavapipe)"
        ))
    })
}

/// CUDA device `index`.
#[cfg(feature = "cuda")]
pub fn cuda(index: usize) -> Result<Device> {
    // burn's CUDA runtime loads the driver when the first kernel runs; one tiny operation
    // here turns a missing driver into this sentence instead of a panic mid-training.
    std::panic::catch_unwind(|| {
        let device = Device::cuda(index);
        let probe = burn::tensor::Tensor::<1>::ones([1], &device).sum();
        probe.into_scalar::<f32>();
        device
    })
    .map_err(|_| {
        VarError::InvalidArgument(
            format!("--device cuda:{index}: no CUDA device started (is an NVIDIA driver installed and GPU {index} visible?)"),
        )
    })
}

/// Without the CUDA backend: the sentence saying how to get it.
#[cfg(not(feature = "cuda"))]
pub fn cuda(_index: usize) -> Result<Device> {
    Err(VarError::InvalidArgument(
        "--device cuda: this var was built without burn's CUDA backend; rebuild with `cargo build --release --features cuda` on a machine with the CUDA toolkit, or use --device wgpu, which runs on NVIDIA GPUs through Vulkan"
            .into(),
    ))
}
