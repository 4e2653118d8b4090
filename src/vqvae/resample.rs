//! The reference's resampling, as small separable matrices.
//!
//! VAR moves latents between scales with PyTorch's `F.interpolate` (`align_corners=False`):
//! `area` to go down (Algorithm 1 and the next-scale input) and `bicubic` to go up (r_k to the
//! finest grid). Both are separable and linear, so each is a `[out, in]` matrix `M` applied as
//! `M X Mᵀ` to every channel. Building the matrices ourselves pins the conventions exactly
//! (framework `interpolate`s differ in corner alignment, clamping and antialiasing) and turns
//! resampling into two tiny matmuls, which every backend (CPU, WebGPU) runs well.

use burn::tensor::{Device, Tensor, TensorData};

/// A `[rows, cols]` row-major f32 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    fn from_rows(rows: Vec<Vec<f64>>, cols: usize) -> Self {
        let n = rows.len();
        let data = rows.into_iter().flatten().map(|w| w as f32).collect();
        Self {
            rows: n,
            cols,
            data,
        }
    }

    /// Uploads the matrix as a `[rows, cols]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [self.rows, self.cols]),
            device,
        )
    }
}

/// `F.interpolate(mode='area')` from `input` to `output` samples, i.e. adaptive average
/// pooling: output `o` averages inputs `[floor(o·in/out), ceil((o+1)·in/out))`.
/// Windows overlap when `in` is not a multiple of `out` (16 → 13).
pub fn area_matrix(output: usize, input: usize) -> Matrix {
    let rows = (0..output)
        .map(|o| {
            let start = (o * input) / output;
            let end = ((o + 1) * input).div_ceil(output);
            let w = 1.0 / (end - start) as f64;
            (0..input)
                .map(|i| if (start..end).contains(&i) { w } else { 0.0 })
                .collect()
        })
        .collect();
    Matrix::from_rows(rows, input)
}

/// Keys' cubic convolution kernel with PyTorch's A = -0.75.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0; // |x| <= 1
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A; // 1 < |x| < 2
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// `F.interpolate(mode='bicubic', align_corners=False)` without antialiasing: source
/// coordinate `(o + 0.5)·in/out − 0.5` (not clamped, unlike bilinear), four taps at
/// `floor(src) − 1 ..= floor(src) + 2`, indices clamped to the border.
pub fn bicubic_matrix(output: usize, input: usize) -> Matrix {
    let scale = input as f64 / output as f64;
    let rows = (0..output)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let base = src.floor();
            let weights = cubic_weights(src - base);
            let mut row = vec![0.0; input];
            for (tap, w) in weights.iter().enumerate() {
                let idx = (base as i64 - 1 + tap as i64).clamp(0, input as i64 - 1) as usize;
                row[idx] += w;
            }
            row
        })
        .collect();
    Matrix::from_rows(rows, input)
}

/// `F.interpolate(mode='bilinear', align_corners=False)`: source coordinate
/// `(o + 0.5)·in/out − 0.5` clamped at 0, two taps. Used to resize edit masks.
pub fn bilinear_matrix(output: usize, input: usize) -> Matrix {
    let scale = input as f64 / output as f64;
    let rows = (0..output)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let t = src - i0 as f64;
            let mut row = vec![0.0; input];
            row[i0] += 1.0 - t;
            row[i1] += t;
            row
        })
        .collect();
    Matrix::from_rows(rows, input)
}

/// Applies a separable resampling `M X Mᵀ` to `[B, C, in, in]`, giving `[B, C, out, out]`.
pub fn resample(x: Tensor<4>, m: &Tensor<2>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let [out, inp] = m.dims();
    debug_assert_eq!((h, w), (inp, inp));
    // The matrices live where the model was loaded; a model forked to another device for
    // data-parallel training (`Module::fork` moves parameters, not these constants) brings
    // them along here.
    let device = x.device();
    let m = &if m.device() == device {
        m.clone()
    } else {
        m.clone().to_device(&device)
    };
    // Columns: [B·C·h, w] @ [w, out] -> [B, C, h, out]
    let x = x
        .reshape([b * c * h, w])
        .matmul(m.clone().transpose())
        .reshape([b * c, h, out]);
    // Rows: [out, h] @ [B·C, h, out] (broadcast over B·C) -> [B, C, out, out]
    let m_b = m.clone().unsqueeze_dim::<3>(0).expand([b * c, out, inp]);
    m_b.matmul(x).reshape([b, c, out, out])
}

/// Index of the φ convolution used at scale `si` of `num_scales`, from the reference's
/// `PhiPartiallyShared`: the conv whose tick is nearest to `si / (num_scales - 1)`.
///
/// Ticks are `linspace(1/(3K), 1 − 1/(3K), K)` for K = 4 and `linspace(1/(2K), 1 − 1/(2K), K)`
/// otherwise. Computed in f64 exactly as numpy does (`start + j·step`, last tick = stop) and
/// taking the first minimum, which reproduces the reference's tie-breaking (for 10 scales,
/// scales 2 and 7 sit exactly between two ticks).
pub fn phi_index(si: usize, num_scales: usize, k: usize) -> usize {
    let edge = if k == 4 {
        1.0 / 3.0 / k as f64
    } else {
        1.0 / 2.0 / k as f64
    };
    let (start, stop) = (edge, 1.0 - edge);
    let step = (stop - start) / (k as f64 - 1.0);
    let at = if num_scales > 1 {
        si as f64 / (num_scales - 1) as f64
    } else {
        0.0
    };
    let mut best = (0, f64::INFINITY);
    for j in 0..k {
        let tick = if j == k - 1 {
            stop
        } else {
            start + j as f64 * step
        };
        let d = (tick - at).abs();
        if d < best.1 {
            best = (j, d);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: &Matrix, r: usize) -> &[f32] {
        &m.data[r * m.cols..(r + 1) * m.cols]
    }

    #[test]
    fn phi_table_matches_reference_for_ten_scales() {
        let table: Vec<usize> = (0..10).map(|si| phi_index(si, 10, 4)).collect();
        assert_eq!(table, [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]);
    }

    #[test]
    fn phi_table_for_four_scales() {
        // at = 0, 1/3, 2/3, 1 against ticks 1/12, 13/36, 23/36, 11/12
        let table: Vec<usize> = (0..4).map(|si| phi_index(si, 4, 4)).collect();
        assert_eq!(table, [0, 1, 2, 3]);
    }

    #[test]
    fn area_rows_average_overlapping_windows() {
        let m = area_matrix(13, 16);
        for r in 0..13 {
            let s: f32 = row(&m, r).iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        // o = 1: [floor(16/13), ceil(32/13)) = [1, 3) -> two inputs of weight 1/2
        assert_eq!(&row(&m, 1)[..4], &[0.0, 0.5, 0.5, 0.0]);
        // Exact 2x2 pooling.
        let m = area_matrix(2, 4);
        assert_eq!(m.data, vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn bicubic_weights_follow_keys_kernel_with_border_clamping() {
        // 2 -> 4: src = -0.25, 0.25, 0.75, 1.25. Row 0 by hand: t = 0.75, taps at -2..=1 with
        // weights W(1.75) = -0.03515625, W(0.75) = 0.26171875, W(0.25) = 0.87890625,
        // W(1.25) = -0.10546875; the first three clamp onto index 0.
        let m = bicubic_matrix(4, 2);
        let expect: [f64; 8] = [
            1.10546875,
            -0.10546875,
            0.7734375,
            0.2265625,
            0.2265625,
            0.7734375,
            -0.10546875,
            1.10546875,
        ];
        for (got, want) in m.data.iter().zip(expect) {
            assert!((*got as f64 - want).abs() < 1e-6, "{:?}", m.data);
        }
        // Upsampling a constant stays constant; 1 -> N copies.
        let m = bicubic_matrix(16, 1);
        assert!(m.data.iter().all(|&w| (w - 1.0).abs() < 1e-6));
    }

    #[test]
    fn bicubic_identity_when_same_size() {
        let m = bicubic_matrix(5, 5);
        for r in 0..5 {
            for c in 0..5 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((m.data[r * 5 + c] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bilinear_clamps_at_the_border() {
        let m = bilinear_matrix(4, 2);
        // src = -0.25 -> 0 (clamped), 0.25, 0.75, 1.25 -> i0 = 1, i1 = 1
        assert_eq!(row(&m, 0), &[1.0, 0.0]);
        assert_eq!(row(&m, 1), &[0.75, 0.25]);
        assert_eq!(row(&m, 3), &[0.0, 1.0]);
    }
}
