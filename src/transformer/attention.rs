//! Multi-head self-attention with the reference's l2-normalised queries and keys.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::kv_cache::KvCache;
use crate::config::VarConfig;
use crate::error::Result;
use crate::nn::Dense;
use crate::nn::Loader;

/// `SelfAttention` of the reference: a fused `mat_qkv` with biases on q and v only, optional
/// l2-normalised attention with a learned per-head temperature, and an output `proj`.
#[derive(Module, Debug)]
pub struct SelfAttention {
    mat_qkv: Dense,
    q_bias: Param<Tensor<1>>,
    v_bias: Param<Tensor<1>>,
    /// Per-head log temperature for l2-normalised attention, `[1, H, 1, 1]`.
    scale_mul_1h11: Param<Tensor<4>>,
    proj: Dense,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    l2_norm: bool,
}

/// The reference caps the learned temperature at 100 (`max_scale_mul = ln 100`).
const MAX_SCALE_MUL: f64 = 4.605_170_185_988_092;

/// `F.normalize(x, dim=-1)`: `x / max(‖x‖, 1e-12)`.
fn l2_normalize(x: Tensor<4>) -> Tensor<4> {
    // x·x, not powf(x, 2): the same value, without a pow call per element.
    let norm = (x.clone() * x.clone()).sum_dim(3).sqrt().clamp_min(1e-12);
    x / norm
}

impl SelfAttention {
    pub fn load(w: &mut Loader, key: &str, cfg: &VarConfig) -> Result<Self> {
        let c = cfg.embed_dim;
        Ok(Self {
            mat_qkv: w.dense(&format!("{key}.mat_qkv"), c, 3 * c, false)?,
            q_bias: w.param(&format!("{key}.q_bias"), [c])?,
            v_bias: w.param(&format!("{key}.v_bias"), [c])?,
            scale_mul_1h11: w.param(&format!("{key}.scale_mul_1H11"), [1, cfg.num_heads, 1, 1])?,
            proj: w.dense(&format!("{key}.proj"), c, c, true)?,
            num_heads: cfg.num_heads,
            l2_norm: cfg.attn_l2_norm,
        })
    }

    /// `x` `[B, l, C]` → `[B, l, C]`.
    ///
    /// Without a cache the queries attend to all `l` tokens of `x`, under `attn_bias`
    /// (`[1, 1, l, l]`, 0 or −∞; the block-causal mask of teacher forcing). With a cache the
    /// new keys/values are appended and the queries attend to everything cached so far, which
    /// at inference is exactly the block-causal pattern, so no mask is needed.
    pub fn forward(
        &self,
        x: Tensor<3>,
        attn_bias: Option<&Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, l, c] = x.dims();
        let (h, hd) = (self.num_heads, c / self.num_heads);
        let k_bias = self.q_bias.val().zeros_like();
        let bias = Tensor::cat(vec![self.q_bias.val(), k_bias, self.v_bias.val()], 0);
        let qkv = (self.mat_qkv.forward(x) + bias.reshape([1, 1, 3 * c])).reshape([b, l, 3, h, hd]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([b, l, h, hd])
                .swap_dims(1, 2)
        }; // [B, H, l, hd]
        let (mut q, mut k, v) = (part(0), part(1), part(2));
        let scale = if self.l2_norm {
            let temperature = self.scale_mul_1h11.val().clamp_max(MAX_SCALE_MUL).exp(); // [1, H, 1, 1]
            q = l2_normalize(q) * temperature;
            k = l2_normalize(k);
            1.0
        } else {
            0.25 / (hd as f64).sqrt()
        };
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let mut scores = q.matmul(k.swap_dims(2, 3)) * scale; // [B, H, l, L']
        if let Some(bias) = attn_bias {
            scores = scores + bias.clone();
        }
        let out = softmax(scores, 3).matmul(v); // [B, H, l, hd]
        self.proj.forward(out.swap_dims(1, 2).reshape([b, l, c]))
    }
}
