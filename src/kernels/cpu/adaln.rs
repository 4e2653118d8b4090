//! AdaLN's steps around a block's two halves, on host data, for the blocks whose Linear layers
//! run on the CPU kernels: the LayerNorm with the class's scale and shift before `mat_qkv` and
//! `fc1`, and the gated residual after `proj` and `fc2`. With [`super::gelu_tanh`] between the
//! MLP's two products, the residual stream stays on the host through the block; burn's forms
//! (`kernels::adaln`'s `_plain` functions) are ten tensor ops and three, each a pass over
//! `[B, l, C]`.
//!
//! The modulation `m` is the block's `[B, 1, K, C]` as host data: chunk `k` of image `b` is
//! `m[(b·K + k)·C..][..C]`.

use super::for_each_chunk_mut;
use super::norm::sum;

/// Rows per task: a row is C values (1,024 for VAR-d16), and the small scales are few rows.
const ROWS_PER_TASK: usize = 16;

/// `ln(x)·(1 + m[b, scale]) + m[b, shift]` for `x [B, l, C]` (`l` rows an image), the
/// LayerNorm over C without an affine part, biased variance, ε = 1e-6 (the reference's).
///
/// # Panics
/// When the shapes disagree: `x` not whole images of `l x c`, `m` not `K` chunks of `c` for
/// each of them, or `scale`/`shift` not among the chunks.
pub fn modulated_layer_norm(
    x: &[f32],
    l: usize,
    c: usize,
    m: &[f32],
    chunks: usize,
    scale: usize,
    shift: usize,
) -> Vec<f32> {
    let images = check(x.len(), l, c, m.len(), chunks, &[scale, shift]);
    let mut out = vec![0f32; images * l * c];
    if c == 0 {
        return out;
    }
    for_each_chunk_mut(&mut out, ROWS_PER_TASK * c, |task, rows| {
        for (i, y) in rows.chunks_exact_mut(c).enumerate() {
            let row = task * ROWS_PER_TASK + i;
            let b = row / l;
            let v = &x[row * c..(row + 1) * c];
            let mean = sum(v, |a| a) / c as f64;
            let mean32 = mean as f32;
            let variance = sum(v, |a| (a - mean32) * (a - mean32)) / c as f64;
            let inv_std = (1.0 / (variance + 1e-6).sqrt()) as f32;
            let scale = &m[(b * chunks + scale) * c..][..c];
            let shift = &m[(b * chunks + shift) * c..][..c];
            for (((y, &a), &s), &t) in y.iter_mut().zip(v).zip(scale).zip(shift) {
                *y = (a - mean32) * inv_std * (1.0 + s) + t;
            }
        }
    });
    out
}

/// `x += h·m[b, gate]` in place, for `x` and `h` `[B, l, C]`.
///
/// # Panics
/// As [`modulated_layer_norm`], or when `h` is not the shape of `x`.
pub fn gated_residual(
    x: &mut [f32],
    h: &[f32],
    l: usize,
    c: usize,
    m: &[f32],
    chunks: usize,
    gate: usize,
) {
    check(x.len(), l, c, m.len(), chunks, &[gate]);
    assert_eq!(
        h.len(),
        x.len(),
        "the residual and the branch differ in shape"
    );
    if c == 0 {
        return;
    }
    for_each_chunk_mut(x, ROWS_PER_TASK * c, |task, rows| {
        for (i, y) in rows.chunks_exact_mut(c).enumerate() {
            let row = task * ROWS_PER_TASK + i;
            let g = &m[((row / l) * chunks + gate) * c..][..c];
            for ((y, &a), &g) in y.iter_mut().zip(&h[row * c..(row + 1) * c]).zip(g) {
                *y += a * g;
            }
        }
    });
}

/// The number of images, after checking the shapes.
fn check(x: usize, l: usize, c: usize, m: usize, chunks: usize, used: &[usize]) -> usize {
    let per_image = l * c;
    assert!(
        per_image == 0 || x.is_multiple_of(per_image),
        "input is not [B, l, C]"
    );
    let images = x.checked_div(per_image).unwrap_or(0);
    assert_eq!(m, images * chunks * c, "modulation is not [B, 1, K, C]");
    assert!(used.iter().all(|&k| k < chunks), "no such modulation chunk");
    images
}

#[cfg(test)]
mod tests {
    use super::super::testing::value;
    use super::*;

    #[test]
    fn modulated_layer_norm_and_gated_residual_match_their_definitions() {
        // Two images of 19 rows (a partial task) of 37 values, off-centre and scaled so that
        // the mean and variance matter, and a modulation of 6 chunks.
        let (b, l, c, k) = (2, 19, 37, 6);
        let x: Vec<f32> = (0..b * l * c).map(|i| 3.0 + 5.0 * value(i, 31)).collect();
        let m: Vec<f32> = (0..b * k * c).map(|i| value(i, 32)).collect();
        let h: Vec<f32> = (0..b * l * c).map(|i| value(i, 33)).collect();
        let got = modulated_layer_norm(&x, l, c, &m, k, 3, 5);
        let mut residual = x.clone();
        gated_residual(&mut residual, &h, l, c, &m, k, 1);
        for (row, v) in x.chunks(c).enumerate() {
            let image = row / l;
            let chunk = |j: usize, i: usize| f64::from(m[(image * k + j) * c + i]);
            let mean = v.iter().map(|&a| f64::from(a)).sum::<f64>() / c as f64;
            let var = v
                .iter()
                .map(|&a| (f64::from(a) - mean).powi(2))
                .sum::<f64>()
                / c as f64;
            for (i, &a) in v.iter().enumerate() {
                let at = row * c + i;
                let want =
                    (f64::from(a) - mean) / (var + 1e-6).sqrt() * (1.0 + chunk(3, i)) + chunk(5, i);
                assert!(
                    (f64::from(got[at]) - want).abs() <= 2e-6,
                    "ln: row {row}, value {i} is {}, expected {want}",
                    got[at]
                );
                let want = f64::from(a) + f64::from(h[at]) * chunk(1, i);
                assert!(
                    (f64::from(residual[at]) - want).abs() <= 2e-6,
                    "residual: row {row}, value {i} is {}, expected {want}",
                    residual[at]
                );
            }
        }
    }
}
