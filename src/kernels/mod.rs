//! Our kernels, below every model module: [`int8`] runs int8 weights on the GPU (WGSL in
//! `shaders/`, through burn's custom-kernel path), [`adaln`], [`activation`] and
//! [`attention`] fuse chains of burn ops into one GPU dispatch each, [`cpu`] runs f32 Linear layers and
//! convolutions on x86-64 CPUs (AVX-512/AVX2, weights packed once at load). Each is checked
//! against burn's own ops, which remain the path everywhere else.

use burn::backend::Cube;
use burn::tensor::{Device, Tensor};

pub mod activation;
pub mod adaln;
pub mod attention;
pub mod cpu;
pub mod int8;
mod wgsl;

/// Whether `device` runs our WGSL kernels (a wgpu/WebGPU device, not burn-flex or autodiff).
pub fn is_gpu(device: &Device) -> bool {
    Tensor::<1>::zeros([1], device)
        .try_into_primitive::<Cube>()
        .is_ok()
}

/// Whether `t` lives on a wgpu/WebGPU device as a plain `Cube` tensor, where our WGSL
/// kernels take it (not burn-flex, not autodiff). Dispatches nothing.
pub fn on_gpu<const D: usize>(t: &Tensor<D>) -> bool {
    t.clone().try_into_primitive::<Cube>().is_ok()
}

/// `t` transposed into a new contiguous matrix. On a GPU this is one copy kernel on the
/// device (tensors staged there never come back to the host); elsewhere the lazy view is
/// returned, which only the staged GPU loader produces.
pub fn transposed_contiguous(t: Tensor<2>) -> Tensor<2> {
    let t = t.transpose();
    match t.clone().try_into_primitive::<Cube>() {
        Ok(primitive) => {
            Tensor::from_primitive::<Cube>(burn::backend::wgpu::into_contiguous(primitive))
        }
        Err(_) => t,
    }
}

/// The largest difference between `got` and `want`, relative to the largest `|want|`: how
/// the kernel tests compare a kernel with its plain reference.
pub fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "outputs of different sizes");
    let peak = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .fold(0f32, |a, (g, w)| a.max((g - w).abs()))
        / peak
}
