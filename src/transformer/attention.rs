//! Multi-head self-attention with the reference's l2-normalised queries and keys.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};

use super::kv_cache::KvCache;
use crate::config::VarConfig;
use crate::error::Result;
use crate::kernels::attention::{MAX_SCALE_MUL, QkvParams, attention_softmax, qkv_heads};
use crate::kernels::cpu::{CpuLinear, HeadParams};
use crate::nn::{Dense, Loader, host_f32};

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

    /// `x` `[B, l, C]` → `[B, l, C]`, before `proj`'s bias when that is returned too (left
    /// to the caller's next kernel, see [`Dense::forward_unbiased`]).
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
    ) -> (Tensor<3>, Option<Tensor<1>>) {
        let out = self.attend(self.mat_qkv.forward(x), attn_bias, cache);
        self.proj.forward_unbiased(out)
    }

    /// What the scores are multiplied by before the softmax: 1 when the temperature is in
    /// the l2-normalised queries, else the reference's `0.25 / sqrt(head_dim)`.
    fn score_scale(&self, head_dim: usize) -> f32 {
        if self.l2_norm {
            1.0
        } else {
            0.25 / (head_dim as f32).sqrt()
        }
    }

    /// `mat_qkv` and `proj`, when both run on the CPU kernels.
    pub fn cpu_layers(&self) -> Option<CpuSelfAttention<'_>> {
        Some(CpuSelfAttention {
            attention: self,
            mat_qkv: self.mat_qkv.cpu_layer()?,
            proj: self.proj.cpu_layer()?,
        })
    }

    /// The attention between the two Linear layers: `mat_qkv`'s output `[B, l, 3C]` to the
    /// heads' outputs `[B, l, C]`, before `proj`.
    fn attend(
        &self,
        qkv: Tensor<3>,
        attn_bias: Option<&Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, l, c3] = qkv.dims();
        let c = c3 / 3;
        let hd = c / self.num_heads;
        let params = QkvParams {
            q_bias: self.q_bias.val(),
            v_bias: self.v_bias.val(),
            scale_mul: self.scale_mul_1h11.val(),
            heads: self.num_heads,
            l2_norm: self.l2_norm,
        };
        let (q, k, v) = qkv_heads(qkv, &params); // [B, H, l, hd]
        let scale = self.score_scale(hd);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let scores = q.matmul(k.swap_dims(2, 3)); // [B, H, l, L']
        let out = attention_softmax(scores, scale, attn_bias).matmul(v); // [B, H, l, hd]
        out.swap_dims(1, 2).reshape([b, l, c])
    }
}

/// A [`SelfAttention`] whose `mat_qkv` and `proj` run on the CPU kernels.
pub struct CpuSelfAttention<'a> {
    attention: &'a SelfAttention,
    mat_qkv: &'a CpuLinear,
    proj: &'a CpuLinear,
}

impl CpuSelfAttention<'_> {
    /// [`SelfAttention::forward`] from and to host data `[B, l, C]` (`dims`), `proj`'s bias
    /// added: the two products on the CPU kernels, and at inference (a cache, no mask) the
    /// attention between them too ([`KvCache::attend_on_host`]); in training (a mask, no
    /// cache) the heads between them run on burn tensors.
    pub fn forward(
        &self,
        x: &[f32],
        dims: [usize; 3],
        attn_bias: Option<&Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Vec<f32> {
        let [b, l, c] = dims;
        let qkv = self.mat_qkv.forward(x, b * l);
        let out = match cache {
            // Inference: the heads, the cache and the scores on the CPU kernels too.
            Some(cache) if attn_bias.is_none() => {
                let a = self.attention;
                let (q_bias, v_bias) = (host_f32(a.q_bias.val()), host_f32(a.v_bias.val()));
                let temperature: Option<Vec<f32>> = a.l2_norm.then(|| {
                    host_f32(a.scale_mul_1h11.val())
                        .into_iter()
                        .map(|s| s.min(MAX_SCALE_MUL as f32).exp())
                        .collect()
                });
                let params = HeadParams {
                    q_bias: &q_bias,
                    v_bias: &v_bias,
                    temperature: temperature.as_deref(),
                    scale: a.score_scale(c / a.num_heads),
                };
                cache.attend_on_host(&qkv, l, &params)
            }
            cache => {
                let device = self.attention.q_bias.val().device();
                let qkv = Tensor::from_data(TensorData::new(qkv, [b, l, 3 * c]), &device);
                host_f32(self.attention.attend(qkv, attn_bias, cache))
            }
        };
        self.proj.forward(&out, b * l)
    }
}
