//! The multi-scale residual quantizer (paper §3.2, reference `models/quant.py`).
//!
//! A latent f is described by K token maps r_1..r_K of growing side `patch_nums[k]`.
//! Algorithm 1 (encode) peels them off coarse to fine from the residual; Algorithm 2
//! (reconstruct) sums their upsampled, φ-refined embeddings back into f̂. Generation uses the
//! same steps one scale at a time ([`Quantizer::add_scale`]).

use crate::nn::Conv;
use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Int, Tensor};

use super::resample::{area_matrix, bicubic_matrix, phi_index, resample};
use crate::config::VqvaeConfig;
use crate::error::Result;
use crate::nn::Loader;

/// Per-scale resampling matrices between the scale's grid (pn) and the finest grid (N).
#[derive(Clone, Debug)]
pub struct ScaleResamplers {
    pub patch_nums: Vec<usize>,
    /// `area` N → pn, `[pn, N]` each.
    down: Vec<Tensor<2>>,
    /// `bicubic` pn → N, `[N, pn]` each.
    up: Vec<Tensor<2>>,
    /// φ conv index per scale.
    phi_table: Vec<usize>,
}

impl ScaleResamplers {
    pub fn new(patch_nums: &[usize], share_quant_resi: usize, device: &Device) -> Self {
        let n = *patch_nums
            .last()
            .expect("validated patch_nums are non-empty");
        let k = patch_nums.len();
        Self {
            patch_nums: patch_nums.to_vec(),
            down: patch_nums
                .iter()
                .map(|&pn| area_matrix(pn, n).to_tensor(device))
                .collect(),
            up: patch_nums
                .iter()
                .map(|&pn| bicubic_matrix(n, pn).to_tensor(device))
                .collect(),
            phi_table: (0..k)
                .map(|si| phi_index(si, k, share_quant_resi))
                .collect(),
        }
    }

    pub fn num_scales(&self) -> usize {
        self.patch_nums.len()
    }

    /// `area(x → pn_si)`, `[B, C, N, N]` → `[B, C, pn, pn]`.
    pub fn area_down(&self, x: Tensor<4>, si: usize) -> Tensor<4> {
        resample(x, &self.down[si])
    }

    /// `bicubic(x → N)`, `[B, C, pn, pn]` → `[B, C, N, N]`.
    pub fn bicubic_up(&self, x: Tensor<4>, si: usize) -> Tensor<4> {
        resample(x, &self.up[si])
    }
}

#[derive(Module, Debug)]
pub struct Quantizer {
    /// The codebook, `[V, Cvae]`.
    pub embedding: Param<Tensor<2>>,
    /// The K shared φ convolutions (`quant_resi.qresi_ls.*`).
    qresi_ls: Vec<Conv>,
    #[module(skip)]
    resi_ratio: f32,
    #[module(skip)]
    pub scales: ScaleResamplers,
}

impl Quantizer {
    pub fn load(w: &mut Loader, cfg: &VqvaeConfig, patch_nums: &[usize]) -> Result<Self> {
        let c = cfg.z_channels;
        let embedding = w.param("quantize.embedding.weight", [cfg.vocab_size, c])?;
        let qresi_ls = (0..cfg.share_quant_resi)
            .map(|i| {
                w.conv(
                    &format!("quantize.quant_resi.qresi_ls.{i}"),
                    c,
                    c,
                    3,
                    1,
                    PaddingConfig2d::Explicit(1, 1, 1, 1),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let scales = ScaleResamplers::new(patch_nums, cfg.share_quant_resi, w.device());
        Ok(Self {
            embedding,
            qresi_ls,
            resi_ratio: cfg.quant_resi,
            scales,
        })
    }

    /// φ_k at scale `si`: `(1 − r)·h + r·conv_k(h)`.
    pub fn phi(&self, h: Tensor<4>, si: usize) -> Tensor<4> {
        let conv = &self.qresi_ls[self.scales.phi_table[si]];
        let r = self.resi_ratio as f64;
        h.clone() * (1.0 - r) + conv.forward(h) * r
    }

    /// Codebook lookup: tokens `[B, pn²]` (row-major) → code vectors `[B, Cvae, pn, pn]`.
    pub fn embed(&self, idx: Tensor<2, Int>) -> Tensor<4> {
        let [b, l] = idx.dims();
        let pn = (l as f64).sqrt().round() as usize;
        let [_, c] = self.embedding.dims();
        self.embedding
            .val()
            .select(0, idx.reshape([b * l]))
            .reshape([b, pn, pn, c])
            .permute([0, 3, 1, 2])
    }

    /// Nearest code by plain squared L2 (`|z|² + |e|² − 2 z·e`, first minimum), for
    /// `z` `[B, Cvae, pn, pn]` → tokens `[B, pn²]`.
    pub fn nearest(&self, z: Tensor<4>) -> Tensor<2, Int> {
        let [b, c, h, w] = z.dims();
        let z = z.permute([0, 2, 3, 1]).reshape([b * h * w, c]); // [N, C]
        let e = self.embedding.val(); // [V, C]
        let z2 = z.clone().powf_scalar(2.0).sum_dim(1); // [N, 1]
        let e2 = e.clone().powf_scalar(2.0).sum_dim(1).transpose(); // [1, V]
        let d = z2 + e2 - z.matmul(e.transpose()) * 2.0; // [N, V]
        d.argmin(1).reshape([b, h * w])
    }

    /// Scale `si`'s contribution to f̂: `φ_si(bicubic(h → N))` (no resize at the last scale).
    pub fn refine(&self, h: Tensor<4>, si: usize) -> Tensor<4> {
        let last = si + 1 == self.scales.num_scales();
        let h = if last {
            h
        } else {
            self.scales.bicubic_up(h, si)
        };
        self.phi(h, si)
    }

    /// One step of f̂ accumulation (`get_next_autoregressive_input`): `f̂ += refine(h)`.
    pub fn accumulate(&self, f_hat: Tensor<4>, h: Tensor<4>, si: usize) -> Tensor<4> {
        f_hat + self.refine(h, si)
    }

    /// Algorithm 1 (`f_to_idxBl_or_fhat`): f `[B, Cvae, N, N]` → tokens per scale and the final
    /// f̂. `r_k = Q(area(f_rest → pn_k))`, then `f_rest −= φ(bicubic(e(r_k)))`.
    pub fn encode(&self, f: Tensor<4>) -> (Vec<Tensor<2, Int>>, Tensor<4>) {
        self.encode_with(f, |_| {})
    }

    /// Algorithm 1, calling `after_scale(&f̂)` after every scale (training adds its
    /// quantization loss there). The residual is updated with detached steps, so gradients
    /// reach the codebook and φ only through f̂.
    pub fn encode_with(
        &self,
        f: Tensor<4>,
        mut after_scale: impl FnMut(&Tensor<4>),
    ) -> (Vec<Tensor<2, Int>>, Tensor<4>) {
        let k = self.scales.num_scales();
        let mut f_rest = f.clone();
        let mut f_hat = f.zeros_like();
        let mut tokens = Vec::with_capacity(k);
        for si in 0..k {
            let z = if si + 1 == k {
                f_rest.clone()
            } else {
                self.scales.area_down(f_rest.clone(), si)
            };
            let idx = self.nearest(z);
            let h = self.refine(self.embed(idx.clone()), si);
            f_hat = f_hat + h.clone();
            f_rest = f_rest - h.detach();
            after_scale(&f_hat);
            tokens.push(idx);
        }
        (tokens, f_hat)
    }

    /// Algorithm 2 (`embed_to_fhat`): tokens per scale → f̂ = Σ_k φ_k(bicubic(e(r_k))).
    pub fn decode(&self, tokens: &[Tensor<2, Int>]) -> Tensor<4> {
        let mut f_hat: Option<Tensor<4>> = None;
        for (si, idx) in tokens.iter().enumerate() {
            let h = self.embed(idx.clone());
            let acc = f_hat.unwrap_or_else(|| self.zeros_fhat(h.dims()[0], &h.device()));
            f_hat = Some(self.accumulate(acc, h, si));
        }
        f_hat.expect("at least one scale")
    }

    /// An empty f̂, `[B, Cvae, N, N]`.
    pub fn zeros_fhat(&self, batch: usize, device: &Device) -> Tensor<4> {
        let n = *self.scales.patch_nums.last().expect("validated");
        let [_, c] = self.embedding.dims();
        Tensor::zeros([batch, c, n, n], device)
    }

    /// The transformer's input for scale `si + 1`: `area(f̂ → pn_{si+1})` flattened to
    /// `[B, pn², Cvae]`.
    pub fn next_scale_input(&self, f_hat: Tensor<4>, next_si: usize) -> Tensor<3> {
        let z = self.scales.area_down(f_hat, next_si);
        let [b, c, h, w] = z.dims();
        z.reshape([b, c, h * w]).swap_dims(1, 2)
    }

    /// `idxBl_to_var_input`: the teacher-forcing input `[B, L − 1, Cvae]` for all scales but
    /// the first.
    pub fn teacher_forcing_input(&self, tokens: &[Tensor<2, Int>]) -> Tensor<3> {
        let k = self.scales.num_scales();
        let b = tokens[0].dims()[0];
        let mut f_hat = self.zeros_fhat(b, &tokens[0].device());
        let mut parts = Vec::with_capacity(k - 1);
        for (si, idx) in tokens.iter().enumerate().take(k - 1) {
            f_hat = self.accumulate(f_hat, self.embed(idx.clone()), si);
            parts.push(self.next_scale_input(f_hat.clone(), si + 1));
        }
        Tensor::cat(parts, 1)
    }
}
