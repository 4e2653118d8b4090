//! The transformer's Linear layers on the CPU, for inference: `y = x·W + b` with the weight
//! packed once at load into column panels, f32 or int8.
//!
//! Why not burn-flex's matmul (the gemm crate): VAR's first seven scales multiply 2 to 128
//! rows by every weight of the model, so they are bound by how fast the weights stream from
//! memory. gemm re-packs the whole weight on every call and picks its blocking for large
//! products; at 18 to 128 rows it streamed a 1024x4096 weight at 1 to 3 GB/s on our 2-core
//! Xeon (`var bench --kernels --backend cpu` has the figures). Here the weight is packed once,
//! in the order the kernel reads it, so every call streams it exactly once, 64 output columns
//! at a time, and each 64-column panel (256 KiB to 1 MiB) stays in L2 while every row of
//! the input passes over it. int8 weights stream a quarter of the bytes and are widened to
//! f32 one panel at a time.
//!
//! The kernels use AVX-512 or AVX2+FMA, picked at run time; elsewhere [`CpuLinear::supported`]
//! is false and the model keeps burn's Linear.

#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

use super::{Isa, Operand, PANEL, SharedOut, TILE_ROWS, isa, panels, tile};

/// The weight of one Linear layer, packed as `[panel][k][PANEL]`; the last panel is padded
/// with zero columns.
enum Packed {
    F32(Vec<f32>),
    /// int8 codes in the same order, and per input group one scale per output column:
    /// `scales[panel][group][PANEL]`.
    Int8 {
        codes: Vec<i8>,
        scales: Vec<f32>,
        group: usize,
    },
}

/// A Linear layer `[d_in] → [d_out]` packed for the CPU kernels.
pub struct CpuLinear {
    d_in: usize,
    d_out: usize,
    weight: Packed,
    bias: Option<Vec<f32>>,
}

impl std::fmt::Debug for CpuLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precision = match self.weight {
            Packed::F32(_) => "f32",
            Packed::Int8 { .. } => "int8",
        };
        f.debug_struct("CpuLinear")
            .field("d_in", &self.d_in)
            .field("d_out", &self.d_out)
            .field("precision", &precision)
            .field("bias", &self.bias.is_some())
            .finish()
    }
}

impl CpuLinear {
    /// Whether this CPU has the kernels (x86-64 with AVX2+FMA or AVX-512).
    pub fn supported() -> bool {
        isa().is_some()
    }

    /// From a row-major `[d_in, d_out]` f32 weight (burn's Linear layout).
    pub fn from_f32(weight: &[f32], d_in: usize, d_out: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), d_in * d_out);
        let mut packed = vec![0f32; panels(d_out) * d_in * PANEL];
        for (p, panel) in packed.chunks_exact_mut(d_in * PANEL).enumerate() {
            let n0 = p * PANEL;
            let width = PANEL.min(d_out - n0);
            for (k, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                row[..width].copy_from_slice(&weight[k * d_out + n0..k * d_out + n0 + width]);
            }
        }
        Self::checked(d_in, d_out, Packed::F32(packed), bias)
    }

    /// From int8 codes stored as PyTorch's `[d_out, d_in]` with one scale per output row and
    /// group of `group` input columns (`scales` is `[d_out, d_in / group]`).
    pub fn from_int8(
        codes: &[i8],
        scales: &[f32],
        d_in: usize,
        d_out: usize,
        group: usize,
        bias: Option<Vec<f32>>,
    ) -> Self {
        assert!(group > 0 && d_in.is_multiple_of(group));
        assert_eq!(codes.len(), d_in * d_out);
        let groups = d_in / group;
        assert_eq!(scales.len(), d_out * groups);
        let np = panels(d_out);
        let mut packed = vec![0i8; np * d_in * PANEL];
        let mut packed_scales = vec![0f32; np * groups * PANEL];
        for n in 0..d_out {
            let (p, j) = (n / PANEL, n % PANEL);
            let panel = &mut packed[p * d_in * PANEL..(p + 1) * d_in * PANEL];
            for (k, &code) in codes[n * d_in..(n + 1) * d_in].iter().enumerate() {
                panel[k * PANEL + j] = code;
            }
            for g in 0..groups {
                packed_scales[(p * groups + g) * PANEL + j] = scales[n * groups + g];
            }
        }
        let weight = Packed::Int8 {
            codes: packed,
            scales: packed_scales,
            group,
        };
        Self::checked(d_in, d_out, weight, bias)
    }

    fn checked(d_in: usize, d_out: usize, weight: Packed, bias: Option<Vec<f32>>) -> Self {
        if let Some(b) = &bias {
            assert_eq!(b.len(), d_out);
        }
        Self {
            d_in,
            d_out,
            weight,
            bias,
        }
    }

    pub fn d_in(&self) -> usize {
        self.d_in
    }

    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// `x [rows, d_in]` (row-major) → `[rows, d_out]`.
    ///
    /// # Panics
    /// When the CPU lacks the kernels ([`Self::supported`]) or `x` is not `rows x d_in`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let isa = isa().expect("the CPU kernels need AVX2+FMA, AVX-512 or WebAssembly SIMD");
        self.forward_with(isa, x, rows)
    }

    fn forward_with(&self, isa: Isa, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.d_in, "input is not [rows, d_in]");
        let (k, n) = (self.d_in, self.d_out);
        let mut out = vec![0f32; rows * n];
        if rows == 0 {
            return out;
        }
        let input = Operand {
            values: x,
            row_stride: k,
            k_stride: 1,
        };
        let out_ptr = SharedOut(out.as_mut_ptr());
        let product = |widened: &mut Vec<f32>, p: usize| {
            let panel = self.panel(p, widened);
            let n0 = p * PANEL;
            // SAFETY: panel `p` writes only columns n0..n0 + width of each row, a range no
            // other panel touches, and `out` outlives the loop.
            unsafe { self.panel_product(isa, &input, rows, panel, p, out_ptr.at(n0), n, 1) };
        };
        // Panels are independent: split them over the cores (rayon's pool, which burn-flex's
        // own matmul uses too).
        #[cfg(target_arch = "x86_64")]
        (0..panels(n))
            .into_par_iter()
            .for_each_init(Vec::new, product);
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut widened = Vec::new();
            (0..panels(n)).for_each(|p| product(&mut widened, p));
        }
        out
    }

    /// Panel `p` as f32: the packed values, or int8 codes widened into `scratch`.
    pub(super) fn panel<'a>(&'a self, p: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let k = self.d_in;
        match &self.weight {
            Packed::F32(w) => &w[p * k * PANEL..(p + 1) * k * PANEL],
            Packed::Int8 {
                codes,
                scales,
                group,
            } => {
                let groups = k / group;
                scratch.resize(k * PANEL, 0.0);
                widen_int8(
                    &codes[p * k * PANEL..(p + 1) * k * PANEL],
                    &scales[p * groups * PANEL..(p + 1) * groups * PANEL],
                    *group,
                    scratch,
                );
                scratch
            }
        }
    }

    /// `out[r, j] = x[r, :] · panel[:, j] + bias` for every row and the panel's columns,
    /// with element (r, j) of the output at `out + r * out_row_stride + j * out_col_stride`.
    ///
    /// # Safety
    /// Those output elements must be writable by this call alone; the CPU must support `isa`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel_product(
        &self,
        isa: Isa,
        x: &Operand,
        rows: usize,
        panel: &[f32],
        p: usize,
        out: *mut f32,
        out_row_stride: usize,
        out_col_stride: usize,
    ) {
        let k = self.d_in;
        let n0 = p * PANEL;
        let width = PANEL.min(self.d_out - n0);
        let bias = self.bias.as_ref().map(|b| &b[n0..n0 + width]);
        let mut tile_out = [0f32; TILE_ROWS * PANEL];
        let mut r0 = 0;
        while r0 < rows {
            let r = TILE_ROWS.min(rows - r0);
            let xp = x.values[r0 * x.row_stride..].as_ptr();
            // SAFETY: rows r0..r0 + r of `x` and the whole panel are in bounds (checked by
            // the callers' shapes); the ISA was detected.
            unsafe { tile(isa, xp, r, k, x, panel, width, &mut tile_out) };
            if out_col_stride == 1 {
                // Rows of the output (Linear layers): a contiguous run per tile row, which
                // vectorises.
                for i in 0..r {
                    // SAFETY: the caller's contract: `width` elements from the row's start.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.add((r0 + i) * out_row_stride), width)
                    };
                    let src = &tile_out[i * PANEL..i * PANEL + width];
                    match bias {
                        Some(b) => {
                            for ((d, &v), &b) in dst.iter_mut().zip(src).zip(b) {
                                *d = v + b;
                            }
                        }
                        None => dst.copy_from_slice(src),
                    }
                }
            } else {
                // Channels of an image (convolutions, `[c_out][pixels]`): column by column,
                // so that each channel gets one run of the tile's rows.
                for j in 0..width {
                    let b = bias.map_or(0.0, |b| b[j]);
                    for i in 0..r {
                        let v = tile_out[i * PANEL + j] + b;
                        // SAFETY: the caller's contract.
                        unsafe { *out.add((r0 + i) * out_row_stride + j * out_col_stride) = v };
                    }
                }
            }
            r0 += r;
        }
    }
}

/// int8 codes of one panel to f32, times their scales.
fn widen_int8(codes: &[i8], scales: &[f32], group: usize, out: &mut [f32]) {
    for (g, scale) in scales.chunks_exact(PANEL).enumerate() {
        let span = g * group * PANEL..(g + 1) * group * PANEL;
        for (dst, src) in out[span.clone()]
            .chunks_exact_mut(PANEL)
            .zip(codes[span].chunks_exact(PANEL))
        {
            for j in 0..PANEL {
                dst[j] = f32::from(src[j]) * scale[j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::isas;
    use super::super::testing::{assert_close, value};
    use super::*;

    /// `x · w + b` in f64, `w` row-major `[k, n]`.
    fn reference(x: &[f32], w: &[f32], rows: usize, k: usize, b: Option<&[f32]>) -> Vec<f32> {
        let n = w.len() / k;
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + j]))
                    .sum();
                y[r * n + j] = (dot + b.map_or(0.0, |b| f64::from(b[j]))) as f32;
            }
        }
        y
    }

    #[test]
    fn f32_panels_match_a_plain_product_at_every_row_count() {
        if isas().is_empty() {
            eprintln!("skipped: this CPU has neither AVX2+FMA nor AVX-512");
            return;
        }
        // d_out = 200 leaves a last panel of 8 columns (half an AVX2 strip, one simd128
        // strip), 100 one of 36 (2.25 AVX2 strips); rows cover 0, partial and full tiles.
        for (k, n) in [(96, 200), (96, 100)] {
            let w: Vec<f32> = (0..k * n).map(|i| value(i, 1)).collect();
            let b: Vec<f32> = (0..n).map(|i| value(i, 2)).collect();
            let with_bias = CpuLinear::from_f32(&w, k, n, Some(b.clone()));
            let without = CpuLinear::from_f32(&w, k, n, None);
            for isa in isas() {
                for rows in [0, 1, 2, 5, 6, 7, 13, 64] {
                    let x: Vec<f32> = (0..rows * k).map(|i| value(i, 3 + rows)).collect();
                    let what = format!("{isa:?}, {rows} rows, d_out {n}");
                    assert_close(
                        &with_bias.forward_with(isa, &x, rows),
                        &reference(&x, &w, rows, k, Some(&b)),
                        k,
                        &what,
                    );
                    assert_close(
                        &without.forward_with(isa, &x, rows),
                        &reference(&x, &w, rows, k, None),
                        k,
                        &what,
                    );
                }
            }
        }
    }

    #[test]
    fn int8_panels_apply_each_groups_scale() {
        if isas().is_empty() {
            eprintln!("skipped: this CPU has neither AVX2+FMA nor AVX-512");
            return;
        }
        let (k, n, rows) = (128, 70, 9);
        for group in [32, 128] {
            let groups = k / group;
            // PyTorch's [d_out, d_in] codes with one scale per (output row, input group).
            let codes: Vec<i8> = (0..n * k).map(|i| (value(i, 5) * 127.0) as i8).collect();
            let scales: Vec<f32> = (0..n * groups).map(|i| 0.01 + 0.001 * i as f32).collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| {
                    let (row, col) = (i / n, i % n); // [k, n]: input row, output column
                    f32::from(codes[col * k + row]) * scales[col * groups + row / group]
                })
                .collect();
            let b: Vec<f32> = (0..n).map(|i| value(i, 6)).collect();
            let layer = CpuLinear::from_int8(&codes, &scales, k, n, group, Some(b.clone()));
            let x: Vec<f32> = (0..rows * k).map(|i| value(i, 7)).collect();
            let want = reference(&x, &w, rows, k, Some(&b));
            for isa in isas() {
                let what = format!("{isa:?}, group {group}");
                assert_close(&layer.forward_with(isa, &x, rows), &want, k, &what);
            }
        }
    }
}
