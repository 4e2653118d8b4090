//! [`CpuConv`]: a convolution on the CPU kernels, as a [`CpuLinear`] over im2col patches
//! gathered straight from NCHW, or, for the 3x3 "same" convolutions, by Winograd's F(2x2, 3x3)
//! ([`Winograd`]) on the same kernel.

#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

use super::winograd::Winograd;
use super::{CpuLinear, Isa, Operand, PANEL, SharedOut, TILE_ROWS, isa, panels};

/// A convolution on the CPU kernels: a Linear layer over the im2col patches, `d_in =
/// c_in·k·k` in PyTorch's `(c_in, ky, kx)` order.
///
/// burn-flex converts every input to NHWC, fills im2col tiles and calls gemm per tile,
/// re-packing the weight each time; the VQ-VAE decode, about 0.39 TFLOP at 256 px, ran at
/// about 30 GFLOP/s that way. Here the weight is packed once and each chunk of output pixels
/// is gathered straight from NCHW into the layout the kernel reads (`k`-major, so the rows of
/// one step are adjacent), multiplied by every panel, and written back as NCHW. A 3x3
/// convolution with stride 1 and one pixel of padding all round (nearly all of the VQ-VAE's
/// FLOPs) goes through [`Winograd`] instead: 2.25x fewer multiplies.
pub struct CpuConv {
    product: Product,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    /// Zero padding (top, left, bottom, right).
    padding: [usize; 4],
}

/// How a [`CpuConv`] multiplies.
enum Product {
    /// im2col patches times the `[c_in·k·k, c_out]` weight.
    Direct(CpuLinear),
    Winograd(Winograd),
}

impl std::fmt::Debug for CpuConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuConv")
            .field("c_in", &self.c_in)
            .field("c_out", &self.c_out)
            .field("algorithm", &self.algorithm())
            .field("kernel", &self.kernel)
            .field("stride", &self.stride)
            .field("padding", &self.padding)
            .finish()
    }
}

impl CpuConv {
    /// From PyTorch's `[c_out, c_in, k, k]` weight (burn's layout too), by the faster of the
    /// two algorithms for the shape: Winograd for 3x3 stride 1 padding 1, else direct.
    pub fn new(
        weight: &[f32],
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: [usize; 4],
        bias: Option<Vec<f32>>,
    ) -> Self {
        if kernel == 3 && stride <= 1 && padding == [1; 4] {
            return Self {
                product: Product::Winograd(Winograd::new(weight, c_in, c_out, bias)),
                c_in,
                c_out,
                kernel,
                stride: 1,
                padding,
            };
        }
        Self::direct(weight, c_in, c_out, kernel, stride, padding, bias)
    }

    /// As [`Self::new`], always direct (im2col): what Winograd is measured and tested against.
    pub fn direct(
        weight: &[f32],
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: [usize; 4],
        bias: Option<Vec<f32>>,
    ) -> Self {
        let d_in = c_in * kernel * kernel;
        assert_eq!(weight.len(), c_out * d_in);
        // [c_out, d_in] → the Linear layout [d_in, c_out].
        let mut transposed = vec![0f32; weight.len()];
        for (o, row) in weight.chunks_exact(d_in).enumerate() {
            for (i, v) in row.iter().enumerate() {
                transposed[i * c_out + o] = *v;
            }
        }
        Self {
            product: Product::Direct(CpuLinear::from_f32(&transposed, d_in, c_out, bias)),
            c_in,
            c_out,
            kernel,
            stride: stride.max(1),
            padding,
        }
    }

    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// `"direct"` or `"winograd"`, for benchmarks.
    pub fn algorithm(&self) -> &'static str {
        match self.product {
            Product::Direct(_) => "direct",
            Product::Winograd(_) => "winograd",
        }
    }

    /// The output's `(height, width)` for an input of `(h, w)`.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let [top, left, bottom, right] = self.padding;
        let out = |size: usize, before: usize, after: usize| {
            (size + before + after).saturating_sub(self.kernel) / self.stride + 1
        };
        (out(h, top, bottom), out(w, left, right))
    }

    /// `x [batch, c_in, h, w]` (NCHW) → `[batch, c_out, h', w']`.
    ///
    /// # Panics
    /// When the CPU lacks the kernels or `x` is not `batch x c_in x h x w`.
    pub fn forward(&self, x: &[f32], batch: usize, h: usize, w: usize) -> Vec<f32> {
        let isa = isa().expect("the CPU kernels need AVX2+FMA, AVX-512 or WebAssembly SIMD");
        self.forward_with(isa, x, batch, h, w)
    }

    fn forward_with(&self, isa: Isa, x: &[f32], batch: usize, h: usize, w: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            batch * self.c_in * h * w,
            "input is not [B, c_in, h, w]"
        );
        let linear = match &self.product {
            Product::Direct(linear) => linear,
            Product::Winograd(winograd) => return winograd.forward_with(isa, x, batch, h, w),
        };
        let (ho, wo) = self.output_size(h, w);
        let (pixels, c_out, d_in) = (ho * wo, self.c_out(), linear.d_in());
        let mut out = vec![0f32; batch * c_out * pixels];
        // Pixels per chunk: the chunk's patches (d_in x chunk floats) about 256 KiB, so they
        // stay in L2 beside one weight panel while every panel passes over them.
        let chunk = ((1 << 16) / d_in).clamp(TILE_ROWS * 4, 256) / TILE_ROWS * TILE_ROWS;
        let chunks = pixels.div_ceil(chunk);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let work = |(patches, widened): &mut (Vec<f32>, Vec<f32>), task: usize| {
            let (b, c) = (task / chunks, task % chunks);
            let p0 = c * chunk;
            let rows = chunk.min(pixels - p0);
            patches.resize(d_in * rows, 0.0);
            self.gather(
                &x[b * self.c_in * h * w..(b + 1) * self.c_in * h * w],
                h,
                w,
                wo,
                p0,
                rows,
                patches,
            );
            let input = Operand {
                values: patches,
                row_stride: 1,
                k_stride: rows,
            };
            for p in 0..panels(c_out) {
                let panel = linear.panel(p, widened);
                // SAFETY: this task alone writes pixels p0..p0 + rows of image b, for every
                // output channel; `out` outlives the loop.
                unsafe {
                    let at = out_ptr.at((b * c_out + p * PANEL) * pixels + p0);
                    linear.panel_product(isa, &input, rows, panel, p, at, 1, pixels);
                }
            }
        };
        #[cfg(target_arch = "x86_64")]
        (0..batch * chunks)
            .into_par_iter()
            .for_each_init(|| (Vec::new(), Vec::new()), work);
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut scratch = (Vec::new(), Vec::new());
            (0..batch * chunks).for_each(|t| work(&mut scratch, t));
        }
        out
    }

    /// The patches of output pixels `p0..p0 + rows` of one image, `k`-major:
    /// `patches[(ci·k + ky)·k + kx][r]`.
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &self,
        image: &[f32],
        h: usize,
        w: usize,
        wo: usize,
        p0: usize,
        rows: usize,
        patches: &mut [f32],
    ) {
        let (k, s) = (self.kernel, self.stride);
        let [top, left, ..] = self.padding;
        for ci in 0..self.c_in {
            let plane = &image[ci * h * w..(ci + 1) * h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let dst = &mut patches[((ci * k + ky) * k + kx) * rows..][..rows];
                    // Walk the chunk one output row at a time: within a row the source
                    // pixels are `s` apart, and only the row's ends can fall in the padding.
                    let (mut oy, mut ox) = (p0 / wo, p0 % wo);
                    let mut r = 0;
                    while r < rows {
                        let run = (wo - ox).min(rows - r);
                        let out = &mut dst[r..r + run];
                        let iy = (oy * s + ky).wrapping_sub(top);
                        if iy >= h {
                            out.fill(0.0);
                        } else {
                            let src = &plane[iy * w..(iy + 1) * w];
                            // Output pixel ox + t reads column (ox + t)·s + kx − left.
                            let first = ox * s + kx;
                            for (t, d) in out.iter_mut().enumerate() {
                                let ix = (first + t * s).wrapping_sub(left);
                                *d = if ix < w { src[ix] } else { 0.0 };
                            }
                        }
                        r += run;
                        ox = 0;
                        oy += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::isas;
    use super::super::testing::{assert_close, value};
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn conv_reference(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        (batch, c_in, h, w): (usize, usize, usize, usize),
        c_out: usize,
        k: usize,
        stride: usize,
        [top, left, bottom, right]: [usize; 4],
    ) -> Vec<f32> {
        let ho = (h + top + bottom - k) / stride + 1;
        let wo = (w + left + right - k) / stride + 1;
        let mut y = Vec::with_capacity(batch * c_out * ho * wo);
        for b in 0..batch {
            for o in 0..c_out {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut sum = f64::from(bias[o]);
                        for ci in 0..c_in {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * stride + ky) as isize - top as isize;
                                    let ix = (ox * stride + kx) as isize - left as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xv =
                                        x[((b * c_in + ci) * h + iy as usize) * w + ix as usize];
                                    let wv = weight[((o * c_in + ci) * k + ky) * k + kx];
                                    sum += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y.push(sum as f32);
                    }
                }
            }
        }
        y
    }

    #[test]
    fn convolutions_match_a_direct_convolution() {
        if isas().is_empty() {
            eprintln!("skipped: this CPU has neither AVX2+FMA nor AVX-512");
            return;
        }
        // The VQ-VAE's shapes: 3x3 "same" (Winograd, and direct), 1x1, and the encoder's
        // stride-2 conv padded on the bottom and right. 70 output channels leave a partial
        // panel; 17x13 pixels leave a partial chunk, a partial tile and, for Winograd, half
        // tiles on the bottom and right edges; 8x6 none; 1x5 a single row of half tiles;
        // 37x29 two Winograd chunks (285 tiles, 216 a chunk here), the second from mid-row.
        let (c_in, c_out) = (5, 70);
        for (batch, h, w) in [(2, 17, 13), (1, 8, 6), (3, 1, 5), (1, 37, 29)] {
            for (k, stride, padding) in [(3, 1, [1, 1, 1, 1]), (1, 1, [0; 4]), (3, 2, [0, 0, 1, 1])]
            {
                if h + padding[0] + padding[2] < k {
                    continue; // the 1-row image is smaller than the unpadded stride-2 kernel
                }
                let x: Vec<f32> = (0..batch * c_in * h * w).map(|i| value(i, 11)).collect();
                let weight: Vec<f32> = (0..c_out * c_in * k * k).map(|i| value(i, 12)).collect();
                let bias: Vec<f32> = (0..c_out).map(|i| value(i, 13)).collect();
                let want = conv_reference(
                    &x,
                    &weight,
                    &bias,
                    (batch, c_in, h, w),
                    c_out,
                    k,
                    stride,
                    padding,
                );
                let b = Some(bias.clone());
                let fastest = CpuConv::new(&weight, c_in, c_out, k, stride, padding, b.clone());
                let direct = CpuConv::direct(&weight, c_in, c_out, k, stride, padding, b);
                let expected = if (k, stride, padding) == (3, 1, [1; 4]) {
                    "winograd"
                } else {
                    "direct"
                };
                assert_eq!(fastest.algorithm(), expected);
                assert_eq!(direct.algorithm(), "direct");
                for conv in [&fastest, &direct] {
                    let what = format!(
                        "{}, {k}x{k} stride {stride} padding {padding:?}, {batch}x{h}x{w}",
                        conv.algorithm()
                    );
                    for isa in isas() {
                        let got = conv.forward_with(isa, &x, batch, h, w);
                        assert_close(&got, &want, c_in * k * k, &format!("{isa:?}, {what}"));
                    }
                }
            }
        }
    }
}
