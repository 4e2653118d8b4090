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

/// Output columns per panel: four AVX-512 vectors, eight AVX2 vectors.
pub const PANEL: usize = 64;

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

/// The instruction sets the kernels are written for ([`isa`] finds none outside x86-64).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Isa {
    Avx512,
    Avx2,
}

/// One register tile through the kernel for `isa` (see [`x86::tile_avx512`]).
///
/// # Safety
/// As the kernels': rows `0..r` of `x` from `xp` and the `k x PANEL` panel are readable.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
unsafe fn tile(
    isa: Isa,
    xp: *const f32,
    r: usize,
    k: usize,
    x: &Operand,
    panel: &[f32],
    out: &mut [f32; TILE_ROWS * PANEL],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => unsafe { x86::tile_avx512(xp, r, k, x.row_stride, x.k_stride, panel, out) },
        Isa::Avx2 => unsafe { x86::tile_avx2(xp, r, k, x.row_stride, x.k_stride, panel, out) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "no CPU kernel for {isa:?} outside x86-64 (rows {}, k stride {})",
        x.row_stride, x.k_stride
    );
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
    Vec::new()
}

fn panels(d_out: usize) -> usize {
    d_out.div_ceil(PANEL)
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
        let isa = isa().expect("the CPU kernels need AVX2+FMA or AVX-512");
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
    fn panel<'a>(&'a self, p: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
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
    unsafe fn panel_product(
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
            unsafe { tile(isa, xp, r, k, x, panel, &mut tile_out) };
            for i in 0..r {
                for j in 0..width {
                    let v = tile_out[i * PANEL + j] + bias.map_or(0.0, |b| b[j]);
                    // SAFETY: the caller's contract.
                    unsafe { *out.add((r0 + i) * out_row_stride + j * out_col_stride) = v };
                }
            }
            r0 += r;
        }
    }
}

/// A convolution on the CPU kernels: a Linear layer over the im2col patches, `d_in =
/// c_in·k·k` in PyTorch's `(c_in, ky, kx)` order.
///
/// burn-flex converts every input to NHWC, fills im2col tiles and calls gemm per tile,
/// re-packing the weight each time; the VQ-VAE decode, about 0.39 TFLOP at 256 px, ran at
/// about 30 GFLOP/s that way. Here the weight is packed once and each chunk of output pixels
/// is gathered straight from NCHW into the layout the kernel reads (`k`-major, so the rows of
/// one step are adjacent), multiplied by every panel, and written back as NCHW.
pub struct CpuConv {
    linear: CpuLinear,
    c_in: usize,
    kernel: usize,
    stride: usize,
    /// Zero padding (top, left, bottom, right).
    padding: [usize; 4],
}

impl std::fmt::Debug for CpuConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuConv")
            .field("c_in", &self.c_in)
            .field("c_out", &self.linear.d_out)
            .field("kernel", &self.kernel)
            .field("stride", &self.stride)
            .field("padding", &self.padding)
            .finish()
    }
}

impl CpuConv {
    /// From PyTorch's `[c_out, c_in, k, k]` weight (burn's layout too).
    pub fn new(
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
            linear: CpuLinear::from_f32(&transposed, d_in, c_out, bias),
            c_in,
            kernel,
            stride: stride.max(1),
            padding,
        }
    }

    pub fn c_out(&self) -> usize {
        self.linear.d_out
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
        let isa = isa().expect("the CPU kernels need AVX2+FMA or AVX-512");
        self.forward_with(isa, x, batch, h, w)
    }

    fn forward_with(&self, isa: Isa, x: &[f32], batch: usize, h: usize, w: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            batch * self.c_in * h * w,
            "input is not [B, c_in, h, w]"
        );
        let (ho, wo) = self.output_size(h, w);
        let (pixels, c_out, d_in) = (ho * wo, self.c_out(), self.linear.d_in);
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
                let panel = self.linear.panel(p, widened);
                // SAFETY: this task alone writes pixels p0..p0 + rows of image b, for every
                // output channel; `out` outlives the loop.
                unsafe {
                    let at = out_ptr.at((b * c_out + p * PANEL) * pixels + p0);
                    self.linear
                        .panel_product(isa, &input, rows, panel, p, at, 1, pixels);
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

/// Rows per register tile: 6 rows x 64 columns is 24 AVX-512 accumulators (of 32 registers).
const TILE_ROWS: usize = 6;

#[cfg(target_arch = "x86_64")]
mod x86 {
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
    /// in four 16-column strips (it stays in L1/L2 between strips).
    ///
    /// # Safety
    /// As [`tile_avx512`], with AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(
        x: *const f32,
        r: usize,
        k: usize,
        rs: usize,
        ks: usize,
        panel: &[f32],
        tile: &mut [f32; TILE_ROWS * PANEL],
    ) {
        debug_assert!(r <= TILE_ROWS && panel.len() == k * PANEL);
        let t = tile.as_mut_ptr();
        for strip in 0..PANEL / 16 {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random value in [-1, 1).
    fn value(i: usize, salt: usize) -> f32 {
        let h = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 2001;
        h as f32 / 1000.0 - 1.0
    }

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

    fn assert_close(got: &[f32], want: &[f32], k: usize, what: &str) {
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

    #[test]
    fn f32_panels_match_a_plain_product_at_every_row_count() {
        if isas().is_empty() {
            eprintln!("skipped: this CPU has neither AVX2+FMA nor AVX-512");
            return;
        }
        // d_out = 200 leaves a partial last panel; rows cover 0, partial and full tiles.
        let (k, n) = (96, 200);
        let w: Vec<f32> = (0..k * n).map(|i| value(i, 1)).collect();
        let b: Vec<f32> = (0..n).map(|i| value(i, 2)).collect();
        let with_bias = CpuLinear::from_f32(&w, k, n, Some(b.clone()));
        let without = CpuLinear::from_f32(&w, k, n, None);
        for isa in isas() {
            for rows in [0, 1, 2, 5, 6, 7, 13, 64] {
                let x: Vec<f32> = (0..rows * k).map(|i| value(i, 3 + rows)).collect();
                let what = format!("{isa:?}, {rows} rows");
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

    /// Direct convolution in f64: `x [B, c_in, h, w]`, `w [c_out, c_in, k, k]`.
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
        // The VQ-VAE's shapes: 3x3 "same", 1x1, and the encoder's stride-2 conv padded on the
        // bottom and right. 70 output channels leave a partial panel; 17x13 pixels leave a
        // partial chunk and a partial tile.
        let (batch, c_in, h, w, c_out) = (2, 5, 17, 13, 70);
        for (k, stride, padding) in [(3, 1, [1, 1, 1, 1]), (1, 1, [0; 4]), (3, 2, [0, 0, 1, 1])] {
            let x: Vec<f32> = (0..batch * c_in * h * w).map(|i| value(i, 11)).collect();
            let weight: Vec<f32> = (0..c_out * c_in * k * k).map(|i| value(i, 12)).collect();
            let bias: Vec<f32> = (0..c_out).map(|i| value(i, 13)).collect();
            let conv = CpuConv::new(&weight, c_in, c_out, k, stride, padding, Some(bias.clone()));
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
            let what = format!("{k}x{k} stride {stride} padding {padding:?}");
            for isa in isas() {
                let got = conv.forward_with(isa, &x, batch, h, w);
                assert_close(&got, &want, c_in * k * k, &format!("{isa:?}, {what}"));
            }
        }
    }
}
