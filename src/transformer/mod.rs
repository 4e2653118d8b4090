//! The VAR transformer (paper §3.1, reference `models/var.py`): a GPT-style decoder whose
//! "next token" is the whole next-scale token map, conditioned on the class by AdaLN.

pub mod ada_ln;
pub mod attention;
pub mod kv_cache;

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{VarConfig, seq_len};
use crate::error::Result;
use crate::nn::Dense;
use crate::nn::Loader;
use crate::nn::export::{HasParamKeys, ParamKeys};
pub use ada_ln::{AdaLnBlock, AdaLnHead, Modulation};
pub use kv_cache::KvCache;

/// The class condition, prepared once per image (or training batch): every block's AdaLN
/// modulation and the head's depend on the class alone, so inference computes them once
/// instead of at each of the ten scales (for VAR-d16 that is 100M weights per scale, the
/// largest single matmul of the first scales).
#[derive(Clone, Debug)]
pub struct Condition {
    /// `class_emb[label]`, `[B, C]` (also the start-of-sequence embedding).
    pub cond: Tensor<2>,
    /// Per block, `[B, 1, 6, C]`.
    blocks: Vec<Tensor<4>>,
    /// The head's `[B, 1, 2, C]`.
    head: Tensor<4>,
}

#[derive(Module, Debug)]
pub struct Var {
    /// `[num_classes + 1, C]`; the last row is the null class of classifier-free guidance.
    class_emb: Param<Tensor<2>>,
    /// `[1, 1, C]`, added to the class token.
    pos_start: Param<Tensor<3>>,
    /// Absolute position of every token, `[1, L, C]`.
    pos_1lc: Param<Tensor<3>>,
    /// One embedding per scale, `[K, C]`.
    lvl_embed: Param<Tensor<2>>,
    /// Code vectors (Cvae) → model width.
    word_embed: Dense,
    /// `Linear(C, 6C)` on `SiLU(cond)` shared by all blocks (d36 only).
    shared_ada_lin: Option<Dense>,
    blocks: Vec<AdaLnBlock>,
    head_nm: AdaLnHead,
    head: Dense,
    #[module(skip)]
    config: VarConfig,
    #[module(skip)]
    patch_nums: Vec<usize>,
    /// The reference key of every parameter, for the exporter.
    #[module(skip)]
    keys: ParamKeys,
}

impl Var {
    /// Builds the transformer from reference-named tensors. `vocab_size` and `z_channels` come
    /// from the VQ-VAE it pairs with.
    pub fn load(
        w: &mut Loader,
        cfg: &VarConfig,
        patch_nums: &[usize],
        vocab_size: usize,
        z_channels: usize,
    ) -> Result<Self> {
        let c = cfg.embed_dim;
        let l = seq_len(patch_nums);
        let shared_ada_lin = if cfg.shared_aln {
            Some(w.dense("shared_ada_lin.1", c, 6 * c, true)?)
        } else {
            None
        };
        Ok(Self {
            class_emb: w.param("class_emb.weight", [cfg.num_classes + 1, c])?,
            pos_start: w.param("pos_start", [1, 1, c])?,
            pos_1lc: w.param("pos_1LC", [1, l, c])?,
            lvl_embed: w.param("lvl_embed.weight", [patch_nums.len(), c])?,
            word_embed: w.dense("word_embed", z_channels, c, true)?,
            shared_ada_lin,
            blocks: (0..cfg.depth)
                .map(|i| AdaLnBlock::load(w, &format!("blocks.{i}"), cfg))
                .collect::<Result<_>>()?,
            head_nm: AdaLnHead::load(w, "head_nm", cfg)?,
            head: w.dense("head", c, vocab_size, true)?,
            config: cfg.clone(),
            patch_nums: patch_nums.to_vec(),
            keys: w.keys(),
        })
    }

    pub fn config(&self) -> &VarConfig {
        &self.config
    }

    pub fn patch_nums(&self) -> &[usize] {
        &self.patch_nums
    }

    /// Index of the first token of each scale, plus L at the end.
    pub fn scale_offsets(&self) -> Vec<usize> {
        let mut offsets = vec![0];
        for pn in &self.patch_nums {
            offsets.push(offsets.last().copied().unwrap_or(0) + pn * pn);
        }
        offsets
    }

    /// Class embeddings and the AdaLN modulation for `labels` `[B]` (the null class is
    /// `num_classes`).
    pub fn condition(&self, labels: Tensor<1, Int>) -> Condition {
        let cond = self.class_emb.val().select(0, labels); // [B, C]
        let silu_cond = silu(cond.clone());
        let modulation = match &self.shared_ada_lin {
            Some(lin) => {
                let b = cond.dims()[0];
                let c = self.config.embed_dim;
                Modulation::Shared(lin.forward(silu_cond.clone()).reshape([b, 1, 6, c]))
            }
            None => Modulation::PerBlock(silu_cond.clone()),
        };
        Condition {
            cond,
            blocks: self
                .blocks
                .iter()
                .map(|block| block.modulation(&modulation))
                .collect(),
            head: self.head_nm.modulation(silu_cond),
        }
    }

    /// `lvl_embed[scale of token i] + pos_1LC[i]` for every token, `[1, L, C]`.
    pub fn level_positions(&self) -> Tensor<3> {
        let device = self.pos_1lc.device();
        let levels: Vec<i64> = self
            .patch_nums
            .iter()
            .enumerate()
            .flat_map(|(si, pn)| std::iter::repeat_n(si as i64, pn * pn))
            .collect();
        let l = levels.len();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(levels, [l]), &device);
        self.lvl_embed.val().select(0, ids).unsqueeze_dim::<3>(0) + self.pos_1lc.val()
    }

    /// The block-causal mask `[1, 1, L, L]`: 0 where token j's scale ≤ token i's scale, −∞
    /// elsewhere, so every token sees its own and all coarser scales.
    pub fn block_causal_bias(&self, device: &Device) -> Tensor<4> {
        let scale_of: Vec<usize> = self
            .patch_nums
            .iter()
            .enumerate()
            .flat_map(|(si, pn)| std::iter::repeat_n(si, pn * pn))
            .collect();
        let l = scale_of.len();
        let mut bias = vec![0f32; l * l];
        for (i, si) in scale_of.iter().enumerate() {
            for (j, sj) in scale_of.iter().enumerate() {
                if sj > si {
                    bias[i * l + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_data(TensorData::new(bias, [1, 1, l, l]), device)
    }

    /// The first scale's input: the class token `cond + pos_start + lvl_pos[0]`, `[B, 1, C]`.
    pub fn first_scale_input(&self, cond: &Condition, lvl_pos: &Tensor<3>) -> Tensor<3> {
        let [b, c] = cond.cond.dims();
        cond.cond.clone().reshape([b, 1, c])
            + self.pos_start.val()
            + lvl_pos.clone().narrow(1, 0, 1)
    }

    /// Scale `si`'s input from the area-downsampled f̂ (`x` `[B, pn², Cvae]`):
    /// `word_embed(x) + lvl_pos[scale si]`, `[B, pn², C]`.
    pub fn scale_input(&self, si: usize, x: Tensor<3>, lvl_pos: &Tensor<3>) -> Tensor<3> {
        let offsets = self.scale_offsets();
        let (start, len) = (offsets[si], offsets[si + 1] - offsets[si]);
        self.word_embed.forward(x) + lvl_pos.clone().narrow(1, start, len)
    }

    /// Empty KV caches for `batch` rows (2B with CFG), one per block.
    pub fn new_caches(&self, batch: usize, device: &Device) -> Vec<KvCache> {
        let cfg = &self.config;
        let l = seq_len(&self.patch_nums);
        (0..cfg.depth)
            .map(|_| KvCache::new(batch, cfg.num_heads, l, cfg.head_dim(), device))
            .collect()
    }

    /// Blocks and head over embedded tokens `x` `[B, l, C]` → logits `[B, l, V]`.
    fn run(
        &self,
        mut x: Tensor<3>,
        cond: &Condition,
        attn_bias: Option<&Tensor<4>>,
        caches: Option<&mut [KvCache]>,
    ) -> Tensor<3> {
        let blocks = self.blocks.iter().zip(&cond.blocks);
        match caches {
            Some(caches) => {
                for ((block, gss), cache) in blocks.zip(caches.iter_mut()) {
                    x = block.forward(x, gss, attn_bias, Some(cache));
                }
            }
            None => {
                for (block, gss) in blocks {
                    x = block.forward(x, gss, attn_bias, None);
                }
            }
        }
        self.head.forward(self.head_nm.forward(x, &cond.head))
    }

    /// One inference step: the tokens of one scale (`x` `[B, pn², C]`, already embedded)
    /// attend to themselves and every cached coarser scale → logits `[B, pn², V]`.
    pub fn forward_scale(
        &self,
        x: Tensor<3>,
        cond: &Condition,
        caches: &mut [KvCache],
    ) -> Tensor<3> {
        self.run(x, cond, None, Some(caches))
    }

    /// Teacher-forced forward over the whole sequence with the block-causal mask:
    /// `labels` `[B]`, `x_wo_first` `[B, L − 1, Cvae]` (from `idxBl_to_var_input`) →
    /// logits `[B, L, V]`. Class dropout for training is the caller's business (pass the
    /// null class).
    pub fn forward(&self, labels: Tensor<1, Int>, x_wo_first: Tensor<3>) -> Tensor<3> {
        let device = x_wo_first.device();
        let cond = self.condition(labels);
        let [b, c] = cond.cond.dims();
        let sos = cond.cond.clone().reshape([b, 1, c]) + self.pos_start.val();
        let x =
            Tensor::cat(vec![sos, self.word_embed.forward(x_wo_first)], 1) + self.level_positions();
        let bias = self.block_causal_bias(&device);
        self.run(x, &cond, Some(&bias), None)
    }
}

impl HasParamKeys for Var {
    fn param_keys(&self) -> &ParamKeys {
        &self.keys
    }
}
