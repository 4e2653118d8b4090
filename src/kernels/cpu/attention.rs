//! Inference attention on the CPU: from `mat_qkv`'s output to the heads' outputs, with the
//! keys and values cached on the host in the layout the register-tile kernel reads.
//!
//! Why not burn-flex's ops: on VAR-d16 they took 1.5 s of the transformer's 5.4 s an image
//! (2026-12-03, the 2-core Xeon), for about 20 GFLOP. Every scale copied each block's whole
//! cache (`slice_assign` on a shared tensor), gemm re-packed keys and values for products of
//! 64-deep rows, and the heads were split, normalised, transposed and softmaxed in a pass
//! each. Here one pass builds the heads and writes the new keys and values straight into the
//! cache, and each (row, head) pair then runs scores, softmax and the weighted sum on the same
//! tile kernel as the Linear layers:
//! - keys are cached transposed, in 64-key panels `[head_dim][PANEL]`, so `q·Kᵀ` is an input
//!   of `head_dim`-deep rows times key panels;
//! - values are cached as `[tokens][PANEL]` column panels of the head dimension, so `P·V` is
//!   the scores' rows times a panel `L` deep, read in place however many tokens are cached.

#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

use super::norm::exp;
use super::{Isa, Operand, PANEL, SharedOut, TILE_ROWS, isa, panels, tile};

/// What turns `mat_qkv`'s product into queries, keys and values (the reference's
/// `SelfAttention`): biases on q and v, and for l2-normalised attention each head's
/// temperature.
pub struct HeadParams<'a> {
    /// `[C]` each.
    pub q_bias: &'a [f32],
    pub v_bias: &'a [f32],
    /// `[H]`: `exp(min(scale_mul, ln 100))` per head when q and k are l2-normalised
    /// (`attn_l2_norm`), `None` when they are not.
    pub temperature: Option<&'a [f32]>,
    /// Multiplies the scores before the softmax (1 with l2-normalised heads).
    pub scale: f32,
}

/// The keys and values of one block for `batch` rows, room for `capacity` tokens.
#[derive(Clone, Debug)]
pub struct HostKv {
    batch: usize,
    heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    /// Per (row, head): `panels(capacity)` panels of `[head_dim][PANEL]`, key `t` in column
    /// `t % PANEL` of panel `t / PANEL`.
    keys: Vec<f32>,
    /// Per (row, head): `panels(head_dim)` panels of `[capacity][PANEL]`.
    values: Vec<f32>,
}

impl HostKv {
    pub fn new(batch: usize, heads: usize, head_dim: usize, capacity: usize) -> Self {
        let pairs = batch * heads;
        Self {
            batch,
            heads,
            head_dim,
            capacity,
            len: 0,
            keys: vec![0.0; pairs * panels(capacity) * head_dim * PANEL],
            values: vec![0.0; pairs * panels(head_dim) * capacity * PANEL],
        }
    }

    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the cached tokens; the buffers stay for the next image.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    fn key_panels(&self) -> usize {
        panels(self.capacity) * self.head_dim * PANEL
    }

    fn value_panels(&self) -> usize {
        panels(self.head_dim) * self.capacity * PANEL
    }

    /// `qkv` `[B, l, 3C]` (`mat_qkv`'s product, no bias) → the heads' outputs `[B, l, C]`
    /// (before `proj`): the new tokens' keys and values are cached, and their queries attend
    /// to every cached token, this scale's included (at inference that is exactly the
    /// reference's block-causal mask, so none is applied).
    ///
    /// # Panics
    /// When `qkv` is not `[batch, l, 3C]` for this cache, the parameters do not match `C` and
    /// the heads, the new tokens overflow the capacity, or the CPU lacks the kernels.
    pub fn attend(&mut self, qkv: &[f32], l: usize, p: &HeadParams) -> Vec<f32> {
        let isa = isa().expect("the CPU kernels need AVX2+FMA, AVX-512 or WebAssembly SIMD");
        self.attend_with(isa, qkv, l, p)
    }

    fn attend_with(&mut self, isa: Isa, qkv: &[f32], l: usize, p: &HeadParams) -> Vec<f32> {
        let (b, h, hd) = (self.batch, self.heads, self.head_dim);
        let c = h * hd;
        assert_eq!(qkv.len(), b * l * 3 * c, "qkv is not [batch, l, 3C]");
        assert!(
            p.q_bias.len() == c && p.v_bias.len() == c,
            "biases are not [C]"
        );
        assert!(
            p.temperature.is_none_or(|t| t.len() == h),
            "temperature is not [H]"
        );
        assert!(self.len + l <= self.capacity, "the KV cache is full");
        let step = Step {
            isa,
            qkv,
            l,
            start: self.len,
            heads: h,
            head_dim: hd,
            capacity: self.capacity,
            params: p,
        };
        let mut out = vec![0f32; b * l * c];
        let out_ptr = SharedOut(out.as_mut_ptr());
        let pair = |scratch: &mut Scratch,
                    (bh, (keys, values)): (usize, (&mut [f32], &mut [f32]))| {
            let (row, head) = (bh / h, bh % h);
            // SAFETY: pair (row, head) writes only columns head·hd .. (head + 1)·hd of rows
            // row·l .. (row + 1)·l of `out`, which no other pair touches, and `out` outlives
            // the loop.
            let dst = unsafe { out_ptr.at(row * l * c + head * hd) };
            // SAFETY: as above; the ISA was detected.
            unsafe { step.pair(row, head, keys, values, scratch, dst) };
        };
        // The (row, head) pairs are independent, each with its own part of the cache: over
        // the cores, as the Linear layers' panels.
        let (key_panels, value_panels) = (self.key_panels(), self.value_panels());
        #[cfg(target_arch = "x86_64")]
        self.keys
            .par_chunks_mut(key_panels)
            .zip(self.values.par_chunks_mut(value_panels))
            .enumerate()
            .for_each_init(Scratch::default, pair);
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut scratch = Scratch::default();
            self.keys
                .chunks_mut(key_panels)
                .zip(self.values.chunks_mut(value_panels))
                .enumerate()
                .for_each(|item| pair(&mut scratch, item));
        }
        self.len += l;
        out
    }
}

/// A (row, head) pair's working memory, kept across the pairs one thread runs.
#[derive(Default)]
struct Scratch {
    /// The pair's new queries and keys, `[l][head_dim]` each.
    queries: Vec<f32>,
    keys: Vec<f32>,
    /// `[l][total]`.
    scores: Vec<f32>,
}

/// One scale's attention: what every (row, head) pair reads.
struct Step<'a> {
    isa: Isa,
    qkv: &'a [f32],
    l: usize,
    /// Tokens cached before this scale's.
    start: usize,
    heads: usize,
    head_dim: usize,
    capacity: usize,
    params: &'a HeadParams<'a>,
}

impl Step<'_> {
    /// Pair (`row`, `head`): its new keys and values into its part of the cache (`keys`,
    /// `values`), then `softmax(scale · q·Kᵀ)·V` for its `l` queries over every cached token,
    /// query `t`'s output at `out + t·C`.
    ///
    /// # Safety
    /// Those `l` rows of `head_dim` values must be writable by this call alone; the CPU must
    /// support the ISA.
    unsafe fn pair(
        &self,
        row: usize,
        head: usize,
        keys: &mut [f32],
        values: &mut [f32],
        scratch: &mut Scratch,
        out: *mut f32,
    ) {
        let (l, hd, start) = (self.l, self.head_dim, self.start);
        let c = self.heads * hd;
        let total = start + l;
        let p = self.params;
        let span = head * hd..(head + 1) * hd;
        let Scratch {
            queries,
            keys: new_keys,
            scores,
        } = scratch;
        queries.resize(l * hd, 0.0);
        new_keys.resize(l * hd, 0.0);
        // The heads: q and k (l2-normalised when the model's are), v with its bias straight
        // into its cache rows.
        for t in 0..l {
            let token = &self.qkv[(row * l + t) * 3 * c..(row * l + t + 1) * 3 * c];
            let q = &mut queries[t * hd..(t + 1) * hd];
            for ((q, &x), &bias) in q
                .iter_mut()
                .zip(&token[span.clone()])
                .zip(&p.q_bias[span.clone()])
            {
                *q = x + bias;
            }
            let k = &mut new_keys[t * hd..(t + 1) * hd];
            k.copy_from_slice(&token[c + head * hd..c + (head + 1) * hd]);
            if let Some(temperature) = p.temperature {
                let q_scale = temperature[head] / l2_norm(q);
                q.iter_mut().for_each(|v| *v *= q_scale);
                let k_scale = 1.0 / l2_norm(k);
                k.iter_mut().for_each(|v| *v *= k_scale);
            }
            let v = &token[2 * c + head * hd..2 * c + (head + 1) * hd];
            for (j, (&v, &bias)) in v.iter().zip(&p.v_bias[span.clone()]).enumerate() {
                values[((j / PANEL) * self.capacity + start + t) * PANEL + j % PANEL] = v + bias;
            }
        }
        // Keys transposed into their panels, a run of consecutive columns per dimension.
        let mut t0 = 0;
        while t0 < l {
            let position = start + t0;
            let (panel, column) = (position / PANEL, position % PANEL);
            let run = (PANEL - column).min(l - t0);
            for kk in 0..hd {
                let dst = &mut keys[(panel * hd + kk) * PANEL + column..][..run];
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = new_keys[(t0 + i) * hd + kk];
                }
            }
            t0 += run;
        }
        scores.clear();
        scores.resize(l * total, 0.0);
        let mut tile_out = [0f32; TILE_ROWS * PANEL];
        let query_rows = Operand {
            values: queries,
            row_stride: hd,
            k_stride: 1,
        };
        for p in 0..panels(total) {
            let panel = &keys[p * hd * PANEL..(p + 1) * hd * PANEL];
            let width = PANEL.min(total - p * PANEL);
            for_each_tile(
                self.isa,
                &query_rows,
                l,
                hd,
                panel,
                width,
                &mut tile_out,
                |t, row| {
                    scores[t * total + p * PANEL..t * total + p * PANEL + width]
                        .copy_from_slice(&row[..width]);
                },
            );
        }
        for row in scores.chunks_exact_mut(total) {
            softmax(row, self.params.scale);
        }
        let weights = Operand {
            values: scores,
            row_stride: total,
            k_stride: 1,
        };
        for p in 0..panels(hd) {
            let base = p * self.capacity * PANEL;
            let panel = &values[base..base + total * PANEL];
            let width = PANEL.min(hd - p * PANEL);
            for_each_tile(
                self.isa,
                &weights,
                l,
                total,
                panel,
                width,
                &mut tile_out,
                |t, row| {
                    for (j, &v) in row[..width].iter().enumerate() {
                        // SAFETY: the caller's contract (row t < l, column p·PANEL + j < hd).
                        unsafe { *out.add(t * c + p * PANEL + j) = v };
                    }
                },
            );
        }
    }
}

/// `x`'s `rows` rows (`k` deep) times `panel`, one register tile of rows at a time;
/// `row(t, values)` receives output row `t` (columns `0..width` valid).
#[allow(clippy::too_many_arguments)]
fn for_each_tile(
    isa: Isa,
    x: &Operand,
    rows: usize,
    k: usize,
    panel: &[f32],
    width: usize,
    tile_out: &mut [f32; TILE_ROWS * PANEL],
    mut row: impl FnMut(usize, &[f32]),
) {
    let mut r0 = 0;
    while r0 < rows {
        let r = TILE_ROWS.min(rows - r0);
        let xp = x.values[r0 * x.row_stride..].as_ptr();
        // SAFETY: rows r0..r0 + r of `x` (each `k` deep) and the `k x PANEL` panel are in
        // bounds by the callers' shapes; the ISA was detected.
        unsafe { tile(isa, xp, r, k, x, panel, width, tile_out) };
        for i in 0..r {
            row(r0 + i, &tile_out[i * PANEL..(i + 1) * PANEL]);
        }
        r0 += r;
    }
}

/// `‖x‖` as `F.normalize` divides by it: at least 1e-12.
fn l2_norm(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12)
}

/// `softmax(scale · row)` in place. The max and the sum run over 16 lanes and the
/// exponentials in a pass of their own, so that all three vectorise (a float reduction in one
/// running variable cannot be reordered, and kept the scalar `exp` in the loop: 0.7 s of
/// d16's 1.0 s of attention).
fn softmax(row: &mut [f32], scale: f32) {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let max = chunks.remainder().iter().fold(
        lanes.into_iter().fold(f32::NEG_INFINITY, f32::max),
        |m, &v| m.max(v),
    );
    let shift = max * scale;
    row.iter_mut().for_each(|v| *v = exp(*v * scale - shift));
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inverse = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inverse);
}

#[cfg(test)]
mod tests {
    use super::super::isas;
    use super::super::testing::value;
    use super::*;

    /// The reference's inference attention in f64 over every token so far: heads with
    /// biases (and l2 norms, temperatures), `softmax(scale · q·kᵀ)·v`, `[B, l, C]`.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        history: &[Vec<f32>],
        lens: &[usize],
        b: usize,
        h: usize,
        hd: usize,
        p: &HeadParams,
    ) -> Vec<f32> {
        let c = h * hd;
        let total: usize = lens.iter().sum();
        let l = *lens.last().unwrap();
        let start = total - l;
        // token (row, position) of the whole sequence → its qkv row
        let token = |row: usize, position: usize| -> &[f32] {
            let (mut s, mut offset) = (0, position);
            while offset >= lens[s] {
                offset -= lens[s];
                s += 1;
            }
            &history[s][(row * lens[s] + offset) * 3 * c..(row * lens[s] + offset + 1) * 3 * c]
        };
        let normalise = |x: Vec<f64>, on: bool| -> Vec<f64> {
            if !on {
                return x;
            }
            let n = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            x.into_iter().map(|v| v / n).collect()
        };
        let l2 = p.temperature.is_some();
        let mut out = vec![0f32; b * l * c];
        for row in 0..b {
            for head in 0..h {
                let part = |x: &[f32], i: usize, bias: Option<&[f32]>| -> Vec<f64> {
                    (0..hd)
                        .map(|j| {
                            let e = i * c + head * hd + j;
                            f64::from(x[e]) + bias.map_or(0.0, |b| f64::from(b[head * hd + j]))
                        })
                        .collect()
                };
                let keys: Vec<Vec<f64>> = (0..total)
                    .map(|s| normalise(part(token(row, s), 1, None), l2))
                    .collect();
                let values: Vec<Vec<f64>> = (0..total)
                    .map(|s| part(token(row, s), 2, Some(p.v_bias)))
                    .collect();
                for t in 0..l {
                    let mut q = normalise(part(token(row, start + t), 0, Some(p.q_bias)), l2);
                    if let Some(temperature) = p.temperature {
                        q.iter_mut()
                            .for_each(|v| *v *= f64::from(temperature[head]));
                    }
                    let s: Vec<f64> = keys
                        .iter()
                        .map(|k| {
                            f64::from(p.scale) * q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>()
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for j in 0..hd {
                        let o: f64 = e.iter().zip(&values).map(|(w, v)| w / sum * v[j]).sum();
                        out[(row * l + t) * c + head * hd + j] = o as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn cached_attention_matches_the_definition_scale_by_scale() {
        if isas().is_empty() {
            eprintln!("skipped: this CPU has neither AVX2+FMA nor AVX-512");
            return;
        }
        // head_dim 32 (a partial value panel), 64 (one) and 80 (one and a part); the scales'
        // token counts take the cache across a key panel (1 + 4 + 9 + 36 + 49 = 99 > 64) and
        // give the tile partial row counts.
        for (b, h, hd, l2) in [(2, 4, 32, true), (2, 2, 64, true), (1, 3, 80, false)] {
            let c = h * hd;
            let q_bias: Vec<f32> = (0..c).map(|i| value(i, 11) * 0.1).collect();
            let v_bias: Vec<f32> = (0..c).map(|i| value(i, 12) * 0.1).collect();
            let temperature: Vec<f32> = (0..h).map(|i| 1.0 + 4.0 * (value(i, 13) + 1.0)).collect();
            let p = HeadParams {
                q_bias: &q_bias,
                v_bias: &v_bias,
                temperature: l2.then_some(temperature.as_slice()),
                scale: if l2 { 1.0 } else { 0.25 / (hd as f32).sqrt() },
            };
            let lens = [1, 4, 9, 36, 49];
            for isa in isas() {
                let mut cache = HostKv::new(b, h, hd, lens.iter().sum());
                let mut history = Vec::new();
                for (si, &l) in lens.iter().enumerate() {
                    let qkv: Vec<f32> = (0..b * l * 3 * c).map(|i| value(i, 20 + si)).collect();
                    let got = cache.attend_with(isa, &qkv, l, &p);
                    history.push(qkv);
                    let want = reference(&history, &lens[..=si], b, h, hd, &p);
                    let what = format!("{isa:?}, b {b}, h {h}, hd {hd}, scale {si}");
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 2e-5,
                            "{what}: element {i} is {g}, expected {w}"
                        );
                    }
                }
                assert_eq!(cache.len(), lens.iter().sum::<usize>());
                // A reset cache serves the next image from its first token again.
                cache.reset();
                let qkv: Vec<f32> = (0..b * 3 * c).map(|i| value(i, 40)).collect();
                let got = cache.attend_with(isa, &qkv, 1, &p);
                let want = reference(std::slice::from_ref(&qkv), &[1], b, h, hd, &p);
                assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 2e-5));
            }
        }
    }
}
