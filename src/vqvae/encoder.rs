//! The VQ-VAE encoder E: image → latent f (reference `basic_vae.Encoder`, `double_z=False`).

use crate::nn::Conv;
use burn::module::Module;
use burn::nn::GroupNorm;
use burn::tensor::Tensor;

use super::blocks::{AttnBlock, Downsample, ResnetBlock, conv3x3, run_level};
use crate::config::VqvaeConfig;
use crate::error::Result;
use crate::nn::Loader;

/// One resolution level: `num_res_blocks` ResnetBlocks (each followed by attention in the
/// deepest level), then a stride-2 downsample except after the deepest level.
#[derive(Module, Debug)]
struct DownLevel {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    downsample: Option<Downsample>,
}

#[derive(Module, Debug)]
pub(crate) struct MidBlock {
    block_1: ResnetBlock,
    attn_1: Option<AttnBlock>,
    block_2: ResnetBlock,
}

impl MidBlock {
    pub(crate) fn load(w: &mut Loader, key: &str, c: usize, attn: bool) -> Result<Self> {
        Ok(Self {
            block_1: ResnetBlock::load(w, &format!("{key}.block_1"), c, c)?,
            attn_1: if attn {
                Some(AttnBlock::load(w, &format!("{key}.attn_1"), c)?)
            } else {
                None
            },
            block_2: ResnetBlock::load(w, &format!("{key}.block_2"), c, c)?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.block_1.forward(x);
        if let Some(attn) = &self.attn_1 {
            x = attn.forward(x);
        }
        self.block_2.forward(x)
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv,
    down: Vec<DownLevel>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Encoder {
    pub fn load(w: &mut Loader, key: &str, cfg: &VqvaeConfig) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let conv_in = conv3x3(w, &format!("{key}.conv_in"), cfg.in_channels, cfg.ch)?;
        let mut down = Vec::with_capacity(levels);
        let mut c_in = cfg.ch;
        for (i, mult) in cfg.ch_mult.iter().enumerate() {
            let c_out = cfg.ch * mult;
            let last = i == levels - 1;
            let mut block = Vec::new();
            let mut attn = Vec::new();
            for j in 0..cfg.num_res_blocks {
                block.push(ResnetBlock::load(
                    w,
                    &format!("{key}.down.{i}.block.{j}"),
                    c_in,
                    c_out,
                )?);
                c_in = c_out;
                if last && cfg.attn_in_last_level {
                    attn.push(AttnBlock::load(
                        w,
                        &format!("{key}.down.{i}.attn.{j}"),
                        c_in,
                    )?);
                }
            }
            let downsample = if last {
                None
            } else {
                Some(Downsample::load(
                    w,
                    &format!("{key}.down.{i}.downsample"),
                    c_in,
                )?)
            };
            down.push(DownLevel {
                block,
                attn,
                downsample,
            });
        }
        Ok(Self {
            conv_in,
            down,
            mid: MidBlock::load(w, &format!("{key}.mid"), c_in, cfg.attn_in_mid)?,
            norm_out: w.group_norm(&format!("{key}.norm_out"), c_in)?,
            conv_out: conv3x3(w, &format!("{key}.conv_out"), c_in, cfg.z_channels)?,
        })
    }

    /// `[B, 3, H, W]` in [-1, 1] → `[B, Cvae, H/f, W/f]`.
    pub fn forward(&self, img: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(img);
        for level in &self.down {
            h = run_level(&level.block, &level.attn, h);
            if let Some(ds) = &level.downsample {
                h = ds.forward(h);
            }
        }
        let h = self.mid.forward(h);
        self.conv_out.forward_normed(&self.norm_out, true, h)
    }
}
