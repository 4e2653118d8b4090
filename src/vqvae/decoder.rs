//! The VQ-VAE decoder D: latent f̂ → image (reference `basic_vae.Decoder`).

use crate::nn::Conv;
use burn::module::Module;
use burn::nn::GroupNorm;
use burn::tensor::Tensor;

use super::blocks::{AttnBlock, ResnetBlock, Upsample, conv3x3, run_level};
use super::encoder::MidBlock;
use crate::config::VqvaeConfig;
use crate::error::Result;
use crate::nn::Loader;

/// One resolution level: `decoder_blocks_per_level()` ResnetBlocks (with attention after each in the
/// deepest level), then nearest x2 + conv except at level 0 (full resolution).
#[derive(Module, Debug)]
struct UpLevel {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    upsample: Option<Upsample>,
}

#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv,
    mid: MidBlock,
    /// Indexed by level as in the reference's keys (`up.0` is full resolution); run deepest first.
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Decoder {
    pub fn load(w: &mut Loader, key: &str, cfg: &VqvaeConfig) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let mut c_in = cfg.ch * cfg.ch_mult[levels - 1];
        let conv_in = conv3x3(w, &format!("{key}.conv_in"), cfg.z_channels, c_in)?;
        let mid = MidBlock::load(w, &format!("{key}.mid"), c_in, cfg.attn_in_mid)?;
        // Built deepest first (the order tensors flow), stored by level index.
        let mut up: Vec<UpLevel> = Vec::with_capacity(levels);
        for i in (0..levels).rev() {
            let c_out = cfg.ch * cfg.ch_mult[i];
            let mut block = Vec::new();
            let mut attn = Vec::new();
            for j in 0..cfg.decoder_blocks_per_level() {
                block.push(ResnetBlock::load(
                    w,
                    &format!("{key}.up.{i}.block.{j}"),
                    c_in,
                    c_out,
                )?);
                c_in = c_out;
                if i == levels - 1 && cfg.attn_in_last_level {
                    attn.push(AttnBlock::load(w, &format!("{key}.up.{i}.attn.{j}"), c_in)?);
                }
            }
            let upsample = if i == 0 {
                None
            } else {
                Some(Upsample::load(w, &format!("{key}.up.{i}.upsample"), c_in)?)
            };
            up.insert(
                0,
                UpLevel {
                    block,
                    attn,
                    upsample,
                },
            );
        }
        Ok(Self {
            conv_in,
            mid,
            up,
            norm_out: w.group_norm(&format!("{key}.norm_out"), c_in)?,
            conv_out: conv3x3(w, &format!("{key}.conv_out"), c_in, cfg.in_channels)?,
        })
    }

    /// `[B, Cvae, h, w]` → `[B, 3, h·f, w·f]` (not clamped).
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.mid.forward(self.conv_in.forward(z));
        for level in self.up.iter().rev() {
            h = run_level(&level.block, &level.attn, h);
            if let Some(up) = &level.upsample {
                h = up.forward(h);
            }
        }
        self.conv_out.forward_normed(&self.norm_out, true, h)
    }
}
