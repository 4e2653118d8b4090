//! Adaptive LayerNorm: the class condition modulates every block and the head
//! (reference `models/basic_var.py`: `AdaLNSelfAttn`, `AdaLNBeforeHead`, `FFN`).

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};

use super::attention::{CpuSelfAttention, SelfAttention};
use super::kv_cache::KvCache;
use crate::config::VarConfig;
use crate::error::Result;
use crate::kernels::activation::gelu_tanh;
use crate::kernels::adaln::{gated_residual, modulated_layer_norm};
use crate::kernels::cpu::{self, CpuLinear};
use crate::nn::{Dense, Loader, host_f32};

/// `fc2(gelu_tanh(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Ffn {
    fc1: Dense,
    fc2: Dense,
}

impl Ffn {
    fn load(w: &mut Loader, key: &str, cfg: &VarConfig) -> Result<Self> {
        let (c, hidden) = (cfg.embed_dim, cfg.mlp_hidden());
        Ok(Self {
            fc1: w.dense(&format!("{key}.fc1"), c, hidden, true)?,
            fc2: w.dense(&format!("{key}.fc2"), hidden, c, true)?,
        })
    }

    /// The MLP's output before `fc2`'s bias, and that bias when it is left to the caller's
    /// next kernel (see [`Dense::forward_unbiased`]); `fc1`'s bias goes into the GELU.
    fn forward(&self, x: Tensor<3>) -> (Tensor<3>, Option<Tensor<1>>) {
        let (h, fc1_bias) = self.fc1.forward_unbiased(x);
        self.fc2.forward_unbiased(gelu_tanh(h, fc1_bias.as_ref()))
    }

    /// `fc1` and `fc2`, when both run on the CPU kernels.
    fn cpu_layers(&self) -> Option<CpuFfn<'_>> {
        Some(CpuFfn {
            fc1: self.fc1.cpu_layer()?,
            fc2: self.fc2.cpu_layer()?,
        })
    }
}

/// An [`Ffn`] whose two layers run on the CPU kernels.
struct CpuFfn<'a> {
    fc1: &'a CpuLinear,
    fc2: &'a CpuLinear,
}

impl CpuFfn<'_> {
    /// `fc2(gelu_tanh(fc1(x)))` on host data `[rows, C]`.
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut hidden = self.fc1.forward(x, rows);
        cpu::gelu_tanh(&mut hidden);
        self.fc2.forward(&hidden, rows)
    }
}

/// The class condition as every block consumes it.
#[derive(Clone, Debug)]
pub enum Modulation {
    /// `SiLU(cond)`, `[B, C]`: each block applies its own `ada_lin`.
    PerBlock(Tensor<2>),
    /// `shared_ada_lin(cond)`, `[B, 1, 6, C]`: each block adds its own `ada_gss` (d36 only).
    Shared(Tensor<4>),
}

/// One transformer block:
/// `x += attn(ln(x)·(1+s1) + b1)·g1;  x += ffn(ln(x)·(1+s2) + b2)·g2`
/// with `(g1, g2, s1, s2, b1, b2)` from the class condition.
#[derive(Module, Debug)]
pub struct AdaLnBlock {
    attn: SelfAttention,
    ffn: Ffn,
    /// `Linear(C, 6C)` on `SiLU(cond)` (the reference's `ada_lin.1`), when not shared.
    ada_lin: Option<Dense>,
    /// Per-block offset `[1, 1, 6, C]` added to the shared projection (d36).
    ada_gss: Option<Param<Tensor<4>>>,
    #[module(skip)]
    embed_dim: usize,
}

impl AdaLnBlock {
    pub fn load(w: &mut Loader, key: &str, cfg: &VarConfig) -> Result<Self> {
        let c = cfg.embed_dim;
        let (ada_lin, ada_gss) = if cfg.shared_aln {
            (
                None,
                Some(w.param(&format!("{key}.ada_gss"), [1, 1, 6, c])?),
            )
        } else {
            (
                Some(w.dense(&format!("{key}.ada_lin.1"), c, 6 * c, true)?),
                None,
            )
        };
        Ok(Self {
            attn: SelfAttention::load(w, &format!("{key}.attn"), cfg)?,
            ffn: Ffn::load(w, &format!("{key}.ffn"), cfg)?,
            ada_lin,
            ada_gss,
            embed_dim: c,
        })
    }

    /// This block's `(g1, g2, s1, s2, b1, b2)`, `[B, 1, 6, C]`. It depends on the class
    /// alone, so inference computes it once per image (see `Condition`), not once per scale.
    pub fn modulation(&self, cond: &Modulation) -> Tensor<4> {
        let c = self.embed_dim;
        match (cond, &self.ada_lin, &self.ada_gss) {
            (Modulation::PerBlock(silu_cond), Some(lin), _) => {
                let b = silu_cond.dims()[0];
                lin.forward(silu_cond.clone()).reshape([b, 1, 6, c])
            }
            (Modulation::Shared(shared), _, Some(gss)) => shared.clone() + gss.val(),
            _ => unreachable!("the model builds blocks and modulation from one config"),
        }
    }

    /// `x` `[B, l, C]` → `[B, l, C]` with this block's [`Self::modulation`] `gss`; see
    /// [`SelfAttention::forward`] for `attn_bias`/`cache`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        gss: &Tensor<4>,
        attn_bias: Option<&Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        if let (Some(attn), Some(ffn)) = (self.attn.cpu_layers(), self.ffn.cpu_layers()) {
            return Self::forward_on_cpu_kernels(&attn, &ffn, x, gss, attn_bias, cache);
        }
        // Order of the six chunks: gamma1, gamma2, scale1, scale2, shift1, shift2.
        let (h, proj_bias) =
            self.attn
                .forward(modulated_layer_norm(x.clone(), gss, 2, 4), attn_bias, cache);
        let x = gated_residual(x, h, proj_bias.as_ref(), gss, 0);
        let (h, fc2_bias) = self.ffn.forward(modulated_layer_norm(x.clone(), gss, 3, 5));
        gated_residual(x, h, fc2_bias.as_ref(), gss, 1)
    }

    /// [`Self::forward`] when every Linear layer of the block runs on the CPU kernels: the
    /// residual stream stays on the host for the whole block, the norms, GELU and residuals
    /// in `kernels::cpu` (one pass each, where burn's ops make about twenty over the block's
    /// activations, the MLP's 4C wide), and only the attention between `mat_qkv` and `proj`
    /// (the heads, the KV cache, the scores) runs on burn tensors.
    fn forward_on_cpu_kernels(
        attn: &CpuSelfAttention,
        ffn: &CpuFfn,
        x: Tensor<3>,
        gss: &Tensor<4>,
        attn_bias: Option<&Tensor<4>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, l, c] = x.dims();
        let (rows, chunks, device) = (b * l, gss.dims()[2], x.device());
        let m = host_f32(gss.clone());
        let mut residual = host_f32(x);
        // Order of the six chunks: gamma1, gamma2, scale1, scale2, shift1, shift2.
        let normed = cpu::modulated_layer_norm(&residual, l, c, &m, chunks, 2, 4);
        let h = attn.forward(&normed, [b, l, c], attn_bias, cache);
        cpu::gated_residual(&mut residual, &h, l, c, &m, chunks, 0);
        let normed = cpu::modulated_layer_norm(&residual, l, c, &m, chunks, 3, 5);
        let h = ffn.forward(&normed, rows);
        cpu::gated_residual(&mut residual, &h, l, c, &m, chunks, 1);
        Tensor::from_data(TensorData::new(residual, [b, l, c]), &device)
    }
}

/// `AdaLNBeforeHead`: `ln(x)·(1 + scale) + shift` with `(scale, shift) = Linear(C, 2C)(SiLU(cond))`.
#[derive(Module, Debug)]
pub struct AdaLnHead {
    ada_lin: Dense,
    #[module(skip)]
    embed_dim: usize,
}

impl AdaLnHead {
    pub fn load(w: &mut Loader, key: &str, cfg: &VarConfig) -> Result<Self> {
        let c = cfg.embed_dim;
        Ok(Self {
            ada_lin: w.dense(&format!("{key}.ada_lin.1"), c, 2 * c, true)?,
            embed_dim: c,
        })
    }

    /// `(scale, shift)`, `[B, 1, 2, C]`, from `silu_cond` `[B, C]` (once per image, like the
    /// blocks' modulation).
    pub fn modulation(&self, silu_cond: Tensor<2>) -> Tensor<4> {
        let b = silu_cond.dims()[0];
        self.ada_lin
            .forward(silu_cond)
            .reshape([b, 1, 2, self.embed_dim])
    }

    /// `x` `[B, l, C]` with [`Self::modulation`] `ss` → `[B, l, C]`.
    pub fn forward(&self, x: Tensor<3>, ss: &Tensor<4>) -> Tensor<3> {
        modulated_layer_norm(x, ss, 0, 1)
    }
}
