//! [`Winograd`]: a 3x3, stride-1, zero-padded-by-one convolution by Winograd's minimal
//! filtering F(2x2, 3x3) (Lavin and Gray, *Fast Algorithms for Convolutional Neural
//! Networks*, 2016), on the same register-tile kernel as every other CPU product.
//!
//! Every 2x2 block of output pixels is computed from the 4x4 block of input pixels around it:
//! the input block is transformed (`V = Bᵀ d B`), each of its 16 elements is multiplied by
//! the matching element of the transformed filter (`U = G g Gᵀ`, once at load) and summed
//! over the input channels, and the 16 sums are transformed back (`Y = Aᵀ M A`). Summed over
//! the channels, the middle step is 16 independent products `[tiles, c_in] x [c_in, c_out]`,
//! so it is 16 packed Linear layers: 16 multiplies per 4 output pixels where the direct
//! convolution does 36, 2.25x fewer. The transforms themselves are additions (and halves,
//! in `G`), cheap beside the products for the VQ-VAE's 32 to 640 channels.
//!
//! The VQ-VAE decode is almost all such convolutions (0.39 TFLOP at 256 px for VAR's
//! tokenizer), which is why it was the one place the direct kernel left most of the time.

#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

use super::{CpuLinear, Isa, Operand, PANEL, SharedOut, TILE_ROWS, panels};

/// Elements of a transformed tile (4x4).
const ALPHA: usize = 16;

/// A 3x3 convolution with stride 1 and one pixel of zero padding on every side, by F(2x2, 3x3).
pub(super) struct Winograd {
    c_in: usize,
    c_out: usize,
    /// `U[ξ]` for each element ξ of the 4x4 transformed tile, as a `[c_in, c_out]` Linear
    /// weight (no bias: the output transform adds it once, after summing).
    products: Vec<CpuLinear>,
    bias: Option<Vec<f32>>,
}

impl Winograd {
    /// From PyTorch's `[c_out, c_in, 3, 3]` weight.
    pub(super) fn new(weight: &[f32], c_in: usize, c_out: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9);
        if let Some(b) = &bias {
            assert_eq!(b.len(), c_out);
        }
        let mut u = vec![vec![0f32; c_in * c_out]; ALPHA];
        for (oc, filter) in weight.chunks_exact(9).enumerate() {
            let (o, c) = (oc / c_in, oc % c_in);
            for (xi, value) in transform_filter(filter).into_iter().enumerate() {
                u[xi][c * c_out + o] = value;
            }
        }
        Self {
            c_in,
            c_out,
            products: u
                .iter()
                .map(|m| CpuLinear::from_f32(m, c_in, c_out, None))
                .collect(),
            bias,
        }
    }

    /// `x [batch, c_in, h, w]` → `[batch, c_out, h, w]`.
    pub(super) fn forward_with(
        &self,
        isa: Isa,
        x: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let (c_in, c_out) = (self.c_in, self.c_out);
        assert_eq!(
            x.len(),
            batch * c_in * h * w,
            "input is not [B, c_in, h, w]"
        );
        let mut out = vec![0f32; batch * c_out * h * w];
        let tiles_x = w.div_ceil(2);
        let tiles = h.div_ceil(2) * tiles_x;
        if tiles == 0 {
            return out;
        }
        // Tiles per task: the task's transformed inputs and sums (16·(c_in + c_out) floats a
        // tile) about 1 MiB, so they stay in L2 between the transforms and the products, in
        // whole register tiles.
        let chunk = ((1 << 18) / (ALPHA * (c_in + c_out))).clamp(TILE_ROWS * 2, 240) / TILE_ROWS
            * TILE_ROWS;
        let chunks = tiles.div_ceil(chunk);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let work = |(v, m, widened): &mut (Vec<f32>, Vec<f32>, Vec<f32>), task: usize| {
            let (b, c) = (task / chunks, task % chunks);
            let t0 = c * chunk;
            let n = chunk.min(tiles - t0);
            v.resize(ALPHA * c_in * n, 0.0);
            m.resize(ALPHA * c_out * n, 0.0);
            let image = &x[b * c_in * h * w..(b + 1) * c_in * h * w];
            transform_input(image, c_in, h, w, tiles_x, t0, n, v);
            for (xi, product) in self.products.iter().enumerate() {
                let input = Operand {
                    values: &v[xi * c_in * n..(xi + 1) * c_in * n],
                    row_stride: 1,
                    k_stride: n,
                };
                let sums = m[xi * c_out * n..(xi + 1) * c_out * n].as_mut_ptr();
                for p in 0..panels(c_out) {
                    let panel = product.panel(p, widened);
                    // SAFETY: the panel writes channels p·PANEL.. of this task's own `m`
                    // block ξ, `[c_out][n]`, all inside it.
                    unsafe {
                        product.panel_product(
                            isa,
                            &input,
                            n,
                            panel,
                            p,
                            sums.add(p * PANEL * n),
                            1,
                            n,
                        )
                    };
                }
            }
            // SAFETY: this task alone writes the pixels of tiles t0..t0 + n of image b, for
            // every output channel; `out` outlives the loop.
            let image_out = unsafe { out_ptr.at(b * c_out * h * w) };
            unsafe { self.transform_output(m, n, t0, tiles_x, h, w, image_out) };
        };
        #[cfg(target_arch = "x86_64")]
        (0..batch * chunks)
            .into_par_iter()
            .for_each_init(|| (Vec::new(), Vec::new(), Vec::new()), work);
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut scratch = (Vec::new(), Vec::new(), Vec::new());
            (0..batch * chunks).for_each(|t| work(&mut scratch, t));
        }
        out
    }

    /// `Y = Aᵀ M A` for tiles t0..t0 + n, plus the bias, written into one image's NCHW
    /// output (the pixels that fall outside it, past an odd edge, are dropped).
    ///
    /// # Safety
    /// `out` must hold `c_out · h · w` writable floats, those of these tiles not written by
    /// anyone else meanwhile.
    #[allow(clippy::too_many_arguments)]
    // Out of line (once per task) so that profiles show the transforms apart from the products.
    #[inline(never)]
    unsafe fn transform_output(
        &self,
        m: &[f32],
        n: usize,
        t0: usize,
        tiles_x: usize,
        h: usize,
        w: usize,
        out: *mut f32,
    ) {
        let c_out = self.c_out;
        // Two output rows of a run of tiles (2m pixels each), before they are clipped to w.
        let mut rows = vec![0f32; 4 * tiles_x];
        for o in 0..c_out {
            let bias = self.bias.as_ref().map_or(0.0, |b| b[o]);
            let block = |xi: usize| &m[(xi * c_out + o) * n..][..n];
            let e: [&[f32]; ALPHA] = std::array::from_fn(block);
            for (offset, ty, tx, run) in tile_runs(t0, n, tiles_x) {
                let (top, bottom) = rows.split_at_mut(2 * tiles_x);
                let (top, bottom) = (&mut top[..2 * run], &mut bottom[..2 * run]);
                let e: [&[f32]; ALPHA] = std::array::from_fn(|xi| &e[xi][offset..offset + run]);
                // Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]], down the columns then along the rows.
                for s in 0..run {
                    let at = |i: usize, j: usize| e[i * 4 + j][s];
                    let s0: [f32; 4] = std::array::from_fn(|j| at(0, j) + at(1, j) + at(2, j));
                    let s1: [f32; 4] = std::array::from_fn(|j| at(1, j) - at(2, j) - at(3, j));
                    top[2 * s] = s0[0] + s0[1] + s0[2] + bias;
                    top[2 * s + 1] = s0[1] - s0[2] - s0[3] + bias;
                    bottom[2 * s] = s1[0] + s1[1] + s1[2] + bias;
                    bottom[2 * s + 1] = s1[1] - s1[2] - s1[3] + bias;
                }
                // The pixels inside the image: past an odd edge, the last column or row is dropped.
                let (x0, width) = (2 * tx, (2 * run).min(w - 2 * tx));
                for (dy, row) in [&*top, &*bottom].into_iter().enumerate() {
                    let oy = 2 * ty + dy;
                    if oy < h {
                        // SAFETY: row oy, columns x0..x0 + width of channel o are inside the
                        // image and belong to these tiles (the caller's contract).
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(out.add((o * h + oy) * w + x0), width)
                        };
                        dst.copy_from_slice(&row[..width]);
                    }
                }
            }
        }
    }
}

/// `U = G g Gᵀ` for one 3x3 filter (row-major), the 4x4 result row-major; computed in f64
/// so the only rounding is the final one.
fn transform_filter(g: &[f32]) -> [f32; ALPHA] {
    // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
    let apply = |a: f64, b: f64, c: f64| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let g = |i: usize, j: usize| f64::from(g[i * 3 + j]);
    // G g: 4x3, one column of g at a time.
    let columns: [[f64; 4]; 3] = std::array::from_fn(|j| apply(g(0, j), g(1, j), g(2, j)));
    let mut u = [0f32; ALPHA];
    for i in 0..4 {
        let row = apply(columns[0][i], columns[1][i], columns[2][i]);
        for (j, value) in row.into_iter().enumerate() {
            u[i * 4 + j] = value as f32;
        }
    }
    u
}

/// The tiles t0..t0 + n in runs along one row of tiles: `(offset in the run of n, ty, tx,
/// tiles)`, so the transforms walk contiguous pixels and divide once per run.
fn tile_runs(
    t0: usize,
    n: usize,
    tiles_x: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut t = t0;
    std::iter::from_fn(move || {
        if t >= t0 + n {
            return None;
        }
        let (ty, tx) = (t / tiles_x, t % tiles_x);
        let m = (tiles_x - tx).min(t0 + n - t);
        let run = (t - t0, ty, tx, m);
        t += m;
        Some(run)
    })
}

/// `V = Bᵀ d B` for tiles t0..t0 + n of one image, where tile (ty, tx) reads the 4x4 input
/// block from row 2ty − 1 and column 2tx − 1 (zero outside the image), into
/// `v[ξ][c][t]` (`ξ`-major, then channel, then tile: the operand layout of the products).
///
/// A run of m tiles along a row reads 4 rows of 2m + 2 pixels: `Bᵀ` is applied down the
/// columns of all of them at once (four vectorised row operations), then `B` along each
/// transformed row, tile by tile, to the 16 contiguous runs of `v`.
#[allow(clippy::too_many_arguments)]
// Out of line (once per task), as `transform_output`.
#[inline(never)]
fn transform_input(
    image: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    tiles_x: usize,
    t0: usize,
    n: usize,
    v: &mut [f32],
) {
    let span = 2 * tiles_x + 2;
    // d: the 4 input rows of a run (zero-padded); a: `Bᵀ d`.
    let mut d = vec![0f32; 4 * span];
    let mut a = vec![0f32; 4 * span];
    for c in 0..c_in {
        let plane = &image[c * h * w..(c + 1) * h * w];
        for (offset, ty, tx, m) in tile_runs(t0, n, tiles_x) {
            let cols = 2 * m + 2;
            // Column 2tx − 1 + j of the image, for j in 0..cols.
            let x0 = (2 * tx).wrapping_sub(1);
            for (i, row) in d.chunks_exact_mut(span).enumerate() {
                let row = &mut row[..cols];
                let y = (2 * ty + i).wrapping_sub(1);
                if y >= h {
                    row.fill(0.0);
                    continue;
                }
                let src = &plane[y * w..(y + 1) * w];
                // The columns inside the image: from max(x0, 0) to min(x0 + cols, w).
                let first = usize::from(tx == 0);
                let last = cols.min(w.wrapping_sub(x0));
                row[..first].fill(0.0);
                row[first..last]
                    .copy_from_slice(&src[x0.wrapping_add(first)..x0.wrapping_add(last)]);
                row[last..].fill(0.0);
            }
            let (d0, rest) = d.split_at(span);
            let (d1, rest) = rest.split_at(span);
            let (d2, d3) = rest.split_at(span);
            let (d0, d1, d2, d3) = (&d0[..cols], &d1[..cols], &d2[..cols], &d3[..cols]);
            // Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] down the columns.
            let (a0, rest) = a.split_at_mut(span);
            let (a1, rest) = rest.split_at_mut(span);
            let (a2, a3) = rest.split_at_mut(span);
            for j in 0..cols {
                a0[j] = d0[j] - d2[j];
                a1[j] = d1[j] + d2[j];
                a2[j] = d2[j] - d1[j];
                a3[j] = d1[j] - d3[j];
            }
            // Then B along the rows: tile s reads columns 2s..2s + 4 of each row of `Bᵀ d`.
            for (i, row) in [&*a0, &*a1, &*a2, &*a3].into_iter().enumerate() {
                let at = |j: usize| ((i * 4 + j) * c_in + c) * n + offset;
                let out = &mut v[at(0)..][..m];
                for (s, o) in out.iter_mut().enumerate() {
                    *o = row[2 * s] - row[2 * s + 2];
                }
                let out = &mut v[at(1)..][..m];
                for (s, o) in out.iter_mut().enumerate() {
                    *o = row[2 * s + 1] + row[2 * s + 2];
                }
                let out = &mut v[at(2)..][..m];
                for (s, o) in out.iter_mut().enumerate() {
                    *o = row[2 * s + 2] - row[2 * s + 1];
                }
                let out = &mut v[at(3)..][..m];
                for (s, o) in out.iter_mut().enumerate() {
                    *o = row[2 * s + 1] - row[2 * s + 3];
                }
            }
        }
    }
}
