//! The register-tile kernel in WebAssembly SIMD (128-bit lanes): the browser's CPU path.
//! The engines map v128 values to 16 XMM (or NEON) registers, so a tile of 6 rows is swept in
//! 8-column strips: 12 accumulators, 2 weight vectors and 1 broadcast. WebAssembly SIMD has no
//! fused multiply-add outside the relaxed-SIMD proposal, so each step is a multiply and an add.

use core::arch::wasm32::*;

use super::{PANEL, TILE_ROWS};

/// `tile[i][..] = x[i, :] · panel` for `r <= 6` rows; `x[i, kk]` is at `x + i * rs + kk * ks`;
/// only the strips that cover `width` columns are computed.
///
/// # Safety
/// Those elements and `k x PANEL` panel values must be readable.
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile_simd128(
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
    for strip in 0..width.div_ceil(8) {
        // SAFETY: every pointer below stays inside `x`'s rows, the panel and the tile, as
        // the caller promises; v128 loads and stores are unaligned-safe.
        unsafe {
            let w = panel.as_ptr().add(strip * 8);
            let mut acc = [[f32x4_splat(0.0); 2]; TILE_ROWS];
            // One loop per row count keeps the accumulators in registers.
            macro_rules! rows {
                ($n:literal) => {
                    for kk in 0..k {
                        let wk = w.add(kk * PANEL);
                        let w0 = v128_load(wk.cast::<v128>());
                        let w1 = v128_load(wk.add(4).cast::<v128>());
                        let xk = x.add(kk * ks);
                        for i in 0..$n {
                            let xi = f32x4_splat(*xk.add(i * rs));
                            acc[i][0] = f32x4_add(acc[i][0], f32x4_mul(xi, w0));
                            acc[i][1] = f32x4_add(acc[i][1], f32x4_mul(xi, w1));
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
                v128_store(t.add(i * PANEL + strip * 8).cast::<v128>(), row[0]);
                v128_store(t.add(i * PANEL + strip * 8 + 4).cast::<v128>(), row[1]);
            }
        }
    }
}
