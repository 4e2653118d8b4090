//! The VQ-VAE's CNN building blocks (reference `models/basic_vae.py`).

use burn::module::Module;
use burn::nn::{GroupNorm, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::error::Result;
use crate::nn::Conv;
use crate::nn::Loader;

/// 3x3, stride 1, padding 1: the shape-preserving conv used everywhere.
pub(crate) fn conv3x3(w: &mut Loader, key: &str, c_in: usize, c_out: usize) -> Result<Conv> {
    w.conv(
        key,
        c_in,
        c_out,
        3,
        1,
        PaddingConfig2d::Explicit(1, 1, 1, 1),
    )
}

fn conv1x1(w: &mut Loader, key: &str, c_in: usize, c_out: usize) -> Result<Conv> {
    w.conv(key, c_in, c_out, 1, 1, PaddingConfig2d::Valid)
}

/// `h = conv1(silu(norm1(x))); h = conv2(silu(norm2(h))); out = shortcut(x) + h`.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv,
    norm2: GroupNorm,
    conv2: Conv,
    /// 1x1 projection, only when the channel count changes.
    nin_shortcut: Option<Conv>,
}

impl ResnetBlock {
    pub fn load(w: &mut Loader, key: &str, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            norm1: w.group_norm(&format!("{key}.norm1"), c_in)?,
            conv1: conv3x3(w, &format!("{key}.conv1"), c_in, c_out)?,
            norm2: w.group_norm(&format!("{key}.norm2"), c_out)?,
            conv2: conv3x3(w, &format!("{key}.conv2"), c_out, c_out)?,
            nin_shortcut: if c_in != c_out {
                Some(conv1x1(w, &format!("{key}.nin_shortcut"), c_in, c_out)?)
            } else {
                None
            },
        })
    }

    /// `[B, C_in, H, W]` → `[B, C_out, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward_normed(&self.norm1, true, x.clone());
        let h = self.conv2.forward_normed(&self.norm2, true, h);
        let shortcut = match &self.nin_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// Single-head spatial self-attention with one fused 1x1 `qkv` conv (split q, k, v in
/// channel order) and a residual `proj_out`.
#[derive(Module, Debug)]
pub struct AttnBlock {
    norm: GroupNorm,
    qkv: Conv,
    proj_out: Conv,
}

impl AttnBlock {
    pub fn load(w: &mut Loader, key: &str, c: usize) -> Result<Self> {
        Ok(Self {
            norm: w.group_norm(&format!("{key}.norm"), c)?,
            qkv: conv1x1(w, &format!("{key}.qkv"), c, 3 * c)?,
            proj_out: conv1x1(w, &format!("{key}.proj_out"), c, c)?,
        })
    }

    /// `[B, C, H, W]` → `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let qkv = self
            .qkv
            .forward_normed(&self.norm, false, x.clone())
            .reshape([b, 3, c, h * w]);
        let q = qkv
            .clone()
            .narrow(1, 0, 1)
            .reshape([b, c, h * w])
            .swap_dims(1, 2); // [B, HW, C]
        let k = qkv.clone().narrow(1, 1, 1).reshape([b, c, h * w]); // [B, C, HW]
        let v = qkv.narrow(1, 2, 1).reshape([b, c, h * w]); // [B, C, HW]
        let attn = softmax(q.matmul(k) * (c as f64).powf(-0.5), 2); // [B, HW_q, HW_k]
        let out = v.matmul(attn.swap_dims(1, 2)).reshape([b, c, h, w]); // [B, C, HW_q]
        x + self.proj_out.forward(out)
    }
}

/// Nearest-neighbour x2 then a 3x3 conv.
#[derive(Module, Debug)]
pub struct Upsample {
    conv: Conv,
}

impl Upsample {
    pub fn load(w: &mut Loader, key: &str, c: usize) -> Result<Self> {
        Ok(Self {
            conv: conv3x3(w, &format!("{key}.conv"), c, c)?,
        })
    }

    /// `[B, C, H, W]` → `[B, C, 2H, 2W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        // Nearest x2 as a broadcast: each pixel is repeated along new axes of size 2.
        let up = x
            .reshape([b, c, h, 1, w, 1])
            .expand([b, c, h, 2, w, 2])
            .reshape([b, c, 2 * h, 2 * w]);
        self.conv.forward(up)
    }
}

/// Zero-pad right and bottom by one, then a 3x3 conv with stride 2 (the reference's
/// `F.pad(x, (0, 1, 0, 1))`), expressed as the conv's own asymmetric padding.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv,
}

impl Downsample {
    pub fn load(w: &mut Loader, key: &str, c: usize) -> Result<Self> {
        Ok(Self {
            conv: w.conv(
                &format!("{key}.conv"),
                c,
                c,
                3,
                2,
                PaddingConfig2d::Explicit(0, 0, 1, 1),
            )?,
        })
    }

    /// `[B, C, H, W]` → `[B, C, H/2, W/2]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// One resolution level's ResnetBlocks, each followed by its attention block where the level
/// has them (only the deepest level does).
pub(crate) fn run_level(blocks: &[ResnetBlock], attn: &[AttnBlock], mut h: Tensor<4>) -> Tensor<4> {
    for (j, block) in blocks.iter().enumerate() {
        h = block.forward(h);
        if let Some(attn) = attn.get(j) {
            h = attn.forward(h);
        }
    }
    h
}
