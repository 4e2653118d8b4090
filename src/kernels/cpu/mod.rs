//! f32 kernels for CPUs, for inference: [`CpuLinear`] (a Linear layer with its weight
//! packed once into column panels, f32 or int8) and [`CpuConv`] (a convolution as that Linear
//! layer over im2col patches, or by Winograd's F(2x2, 3x3) for the 3x3 ones), and
//! [`group_norm`] (GroupNorm + SiLU in place, which the VQ-VAE runs before its convolutions),
//! the steps of a transformer block's MLP half between its two products
//! ([`modulated_layer_norm`], [`gelu_tanh`], [`gated_residual`]), and inference attention
//! over a host KV cache ([`HostKv`]).
//! This file holds what both share: picking AVX-512 or AVX2+FMA
//! at run time on x86-64 ([`x86`]), or WebAssembly SIMD in the browser ([`wasm`], compiled in
//! by the build's `+simd128`), the one register-tile kernel they both call, the panel
//! geometry, and the strided operand and shared output pointer the kernel is driven through.
//!
//! Elsewhere, or on an x86-64 CPU with neither instruction set, [`CpuLinear::supported`] is
//! false and the model keeps burn's own ops.

mod activation;
mod adaln;
mod attention;
mod conv;
mod linear;
mod norm;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
mod winograd;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::gelu_tanh;
pub use adaln::{gated_residual, modulated_layer_norm};
pub use attention::{HeadParams, HostKv};
pub use conv::CpuConv;
pub use linear::CpuLinear;
pub use norm::group_norm;

/// Output columns per panel: four AVX-512 vectors, eight AVX2 vectors.
pub const PANEL: usize = 64;

/// The instruction sets the kernels are written for ([`isa`] finds the one this CPU runs).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // each target builds only its own
enum Isa {
    Avx512,
    Avx2,
    Simd128,
}

/// One register tile through the kernel for `isa` (see [`x86::tile_avx512`]): columns
/// `0..width` of `out` are the products (kernels that sweep the panel in strips skip the
/// strips past `width`, the zero padding of a partial last panel; what they leave there is
/// not the product).
///
/// # Safety
/// As the kernels': rows `0..r` of `x` from `xp` and the `k x PANEL` panel are readable.
#[allow(clippy::too_many_arguments)]
#[allow(unreachable_patterns)] // each target builds only its own kernels
unsafe fn tile(
    isa: Isa,
    xp: *const f32,
    r: usize,
    k: usize,
    x: &Operand,
    panel: &[f32],
    width: usize,
    out: &mut [f32; TILE_ROWS * PANEL],
) {
    let (rs, ks) = (x.row_stride, x.k_stride);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::tile_avx512(xp, r, k, rs, ks, panel, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::tile_avx2(xp, r, k, rs, ks, panel, width, out) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => unsafe { wasm::tile_simd128(xp, r, k, rs, ks, panel, width, out) },
        // `isa` only returns what this target built.
        _ => unreachable!("no CPU kernel for {isa:?} in this build ({xp:?}, {r} rows, k {k})"),
    }
}

/// The best kernel this CPU runs.
fn isa() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(Isa::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(Isa::Avx2);
        }
    }
    // A wasm module is validated whole before it runs, so a build with SIMD only ever runs
    // where SIMD is (the page checks before loading the package).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Some(Isa::Simd128);
    #[allow(unreachable_code)]
    None
}

/// Every kernel this CPU runs, so the tests check the AVX2 one on AVX-512 machines too.
#[cfg(test)]
fn isas() -> Vec<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut found = Vec::new();
        if std::arch::is_x86_feature_detected!("avx512f") {
            found.push(Isa::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            found.push(Isa::Avx2);
        }
        found
    }
    #[cfg(not(target_arch = "x86_64"))]
    isa().into_iter().collect()
}

/// `f(index, chunk)` for each `chunk`-long piece of `x` (the last may be shorter), over the
/// cores on x86-64 (rayon's pool, which burn-flex's own ops use too) and in order elsewhere
/// (the page's wasm has one thread).
fn for_each_chunk_mut(x: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Send + Sync) {
    #[cfg(target_arch = "x86_64")]
    {
        use rayon::prelude::*;
        x.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(index, piece)| f(index, piece));
    }
    #[cfg(not(target_arch = "x86_64"))]
    x.chunks_mut(chunk)
        .enumerate()
        .for_each(|(index, piece)| f(index, piece));
}

fn panels(d_out: usize) -> usize {
    d_out.div_ceil(PANEL)
}

/// A matrix the kernels read: element `(r, k)` at `r * row_stride + k * k_stride`.
struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    k_stride: usize,
}

/// The output pointer, shared by the tasks (each writes its own elements).
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the tasks sharing it write disjoint elements (see each use).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `offset` must lie inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// Rows per register tile: 6 rows x 64 columns is 24 AVX-512 accumulators (of 32 registers).
const TILE_ROWS: usize = 6;

/// Helpers for the tests of both kernels.
#[cfg(test)]
mod testing {
    /// A deterministic pseudo-random value in [-1, 1).
    pub(super) fn value(i: usize, salt: usize) -> f32 {
        let h = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 2001;
        h as f32 / 1000.0 - 1.0
    }

    pub(super) fn assert_close(got: &[f32], want: &[f32], k: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        // f32 accumulation of k products of values in [-1, 1].
        let tolerance = 1e-6 * k as f32;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance,
                "{what}: element {i} is {g}, expected {w}"
            );
        }
    }
}
