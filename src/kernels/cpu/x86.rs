//! The register-tile kernels in AVX-512 and AVX2+FMA intrinsics: one tile of up to
//! [`TILE_ROWS`] input rows times one [`PANEL`]-column weight panel, accumulated in registers.

use super::{PANEL, TILE_ROWS};
use std::arch::x86_64::*;

/// `tile[i][..] = x[i, :] · panel` for `r <= 6` rows, AVX-512; `x[i, kk]` is at
/// `x + i * rs + kk * ks`.
///
/// # Safety
/// Those elements and `k x PANEL` panel values must be readable; AVX-512F present.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_avx512(
    x: *const f32,
    r: usize,
    k: usize,
    rs: usize,
    ks: usize,
    panel: &[f32],
    tile: &mut [f32; TILE_ROWS * PANEL],
) {
    debug_assert!(r <= TILE_ROWS && panel.len() == k * PANEL);
    let mut acc = [[_mm512_setzero_ps(); 4]; TILE_ROWS];
    let w = panel.as_ptr();
    // One loop per row count keeps the accumulators in registers.
    macro_rules! rows {
        ($n:literal) => {
            for kk in 0..k {
                let wk = w.add(kk * PANEL);
                let w0 = _mm512_loadu_ps(wk);
                let w1 = _mm512_loadu_ps(wk.add(16));
                let w2 = _mm512_loadu_ps(wk.add(32));
                let w3 = _mm512_loadu_ps(wk.add(48));
                let xk = x.add(kk * ks);
                for i in 0..$n {
                    let xi = _mm512_set1_ps(*xk.add(i * rs));
                    acc[i][0] = _mm512_fmadd_ps(xi, w0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(xi, w1, acc[i][1]);
                    acc[i][2] = _mm512_fmadd_ps(xi, w2, acc[i][2]);
                    acc[i][3] = _mm512_fmadd_ps(xi, w3, acc[i][3]);
                }
            }
        };
    }
    unsafe {
        match r {
            1 => rows!(1),
            2 => rows!(2),
            3 => rows!(3),
            4 => rows!(4),
            5 => rows!(5),
            _ => rows!(6),
        }
        let t = tile.as_mut_ptr();
        for (i, row) in acc.iter().enumerate().take(r) {
            for (j, v) in row.iter().enumerate() {
                _mm512_storeu_ps(t.add(i * PANEL + j * 16), *v);
            }
        }
    }
}

/// The same with AVX2+FMA: 16 registers hold 6 rows x 16 columns, so the panel is swept
/// in 16-column strips (it stays in L1/L2 between strips), as many as cover `width`
/// columns: a partial last panel (160 channels are 64 + 64 + 32) skips its zero columns.
///
/// # Safety
/// As [`tile_avx512`], with AVX2 and FMA present.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_avx2(
    x: *const f32,
    r: usize,
    k: usize,
    rs: usize,
    ks: usize,
    panel: &[f32],
    width: usize,
    tile: &mut [f32; TILE_ROWS * PANEL],
) {
    debug_assert!(r <= TILE_ROWS && panel.len() == k * PANEL && width <= PANEL);
    let t = tile.as_mut_ptr();
    for strip in 0..width.div_ceil(16) {
        unsafe {
            let w = panel.as_ptr().add(strip * 16);
            let mut acc = [[_mm256_setzero_ps(); 2]; TILE_ROWS];
            macro_rules! rows {
                ($n:literal) => {
                    for kk in 0..k {
                        let wk = w.add(kk * PANEL);
                        let w0 = _mm256_loadu_ps(wk);
                        let w1 = _mm256_loadu_ps(wk.add(8));
                        let xk = x.add(kk * ks);
                        for i in 0..$n {
                            let xi = _mm256_set1_ps(*xk.add(i * rs));
                            acc[i][0] = _mm256_fmadd_ps(xi, w0, acc[i][0]);
                            acc[i][1] = _mm256_fmadd_ps(xi, w1, acc[i][1]);
                        }
                    }
                };
            }
            match r {
                1 => rows!(1),
                2 => rows!(2),
                3 => rows!(3),
                4 => rows!(4),
                5 => rows!(5),
                _ => rows!(6),
            }
            for (i, row) in acc.iter().enumerate().take(r) {
                _mm256_storeu_ps(t.add(i * PANEL + strip * 16), row[0]);
                _mm256_storeu_ps(t.add(i * PANEL + strip * 16 + 8), row[1]);
            }
        }
    }
}
