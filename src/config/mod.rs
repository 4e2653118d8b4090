//! Model configuration: what a set of weights is, serialised as `config.json` next to them.
//!
//! The web layer and the CLI never hard-code a hyperparameter: everything they need (sizes,
//! scale schedule, class names, recommended sampling settings) is read from here.

use serde::{Deserialize, Serialize};

use crate::error::{Result, VarError};

pub mod sampling;
pub use sampling::SamplingParams;

/// Fashion-MNIST's classes in label order (the dataset's own names).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
/// Upper bounds on what a `config.json` may ask for, checked before anything is built from it,
/// so that a hostile config cannot make the loader allocate without bound or overflow a size.
/// Each is far above the largest official model (VAR-d36: depth 36, width 2304, 512 px,
/// 32x32 finest scale, 4096 codes of width 32, VQ-VAE width 160 x 4, 5 levels).
pub mod limits {
    pub const MAX_VOCAB: usize = 1 << 20;
    pub const MAX_CHANNELS: usize = 4096;
    pub const MAX_CH_MULT: usize = 16;
    pub const MAX_LEVELS: usize = 8;
    pub const MAX_RES_BLOCKS: usize = 16;
    pub const MAX_SHARE_QUANT_RESI: usize = 64;
    pub const MAX_DEPTH: usize = 128;
    pub const MAX_EMBED_DIM: usize = 16384;
    pub const MAX_HEADS: usize = 256;
    pub const MAX_CLASSES: usize = 1 << 20;
    pub const MAX_MLP_RATIO: f32 = 16.0;
    pub const MAX_SCALES: usize = 32;
    pub const MAX_PATCH: usize = 256;
    pub const MAX_IMAGE_SIZE: usize = 4096;
}

/// The official 10-scale schedule of the 256 px models (L = 680 tokens).
pub const OFFICIAL_PATCH_NUMS: [usize; 10] = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16];

/// The multi-scale VQ-VAE (paper §3.2, reference `models/vqvae.py`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqvaeConfig {
    /// Codebook size V.
    pub vocab_size: usize,
    /// Latent channels Cvae (the reference's `z_channels`; also the code vector width).
    pub z_channels: usize,
    /// Base channel count of the encoder/decoder CNN.
    pub ch: usize,
    /// Channel multiplier per resolution level; the downsampling factor is `2^(levels-1)`.
    pub ch_mult: Vec<usize>,
    /// ResnetBlocks per encoder level (the decoder uses one more unless
    /// `decoder_res_blocks` says otherwise).
    pub num_res_blocks: usize,
    /// ResnetBlocks per decoder level when it differs from the reference's
    /// `num_res_blocks + 1`. The decoder does not decide the tokens, so it can grow after the
    /// transformer is trained (`var train vqvae --grow-from`); absent in every official model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_res_blocks: Option<usize>,
    /// Self-attention after each block of the deepest level (the reference's `using_sa`).
    pub attn_in_last_level: bool,
    /// Self-attention in the middle block (the reference's `using_mid_sa`).
    pub attn_in_mid: bool,
    /// Image channels (3 for RGB).
    pub in_channels: usize,
    /// φ residual ratio: `phi(h) = (1 - r) h + r conv(h)`.
    pub quant_resi: f32,
    /// Number of φ convolutions shared across the scales (K in the reference; at least 2).
    pub share_quant_resi: usize,
}

impl VqvaeConfig {
    /// The official `vae_ch160v4096z32` (256 px images, factor 16, 108,948,355 parameters).
    pub fn official() -> Self {
        Self {
            vocab_size: 4096,
            z_channels: 32,
            ch: 160,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 2,
            decoder_res_blocks: None,
            attn_in_last_level: true,
            attn_in_mid: true,
            in_channels: 3,
            quant_resi: 0.5,
            share_quant_resi: 4,
        }
    }

    /// ResnetBlocks per decoder level.
    pub fn decoder_blocks_per_level(&self) -> usize {
        self.decoder_res_blocks.unwrap_or(self.num_res_blocks + 1)
    }

    /// Spatial downsampling factor from image to latent grid.
    pub fn downsample_factor(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        use limits::*;
        let bad = |m: &str| Err(VarError::Config(m.to_string()));
        if self.vocab_size == 0 || self.z_channels == 0 || self.ch == 0 {
            return bad("vqvae vocab_size, z_channels and ch must be positive");
        }
        if self.ch_mult.is_empty() || self.ch_mult.contains(&0) {
            return bad("vqvae ch_mult must be a non-empty list of positive multipliers");
        }
        let res_blocks = self
            .decoder_res_blocks
            .unwrap_or(1)
            .max(self.num_res_blocks);
        if self.vocab_size > MAX_VOCAB
            || self.z_channels > MAX_CHANNELS
            || self.ch > MAX_CHANNELS
            || self.in_channels > MAX_CHANNELS
            || self.ch_mult.len() > MAX_LEVELS
            || self.ch_mult.iter().any(|&m| m > MAX_CH_MULT)
            || res_blocks > MAX_RES_BLOCKS
            || self.share_quant_resi > MAX_SHARE_QUANT_RESI
        {
            return Err(VarError::Config(format!(
                "the vqvae is larger than this reader accepts (at most {MAX_VOCAB} codes, \
                 {MAX_CHANNELS} channels, {MAX_LEVELS} levels of multiplier <= {MAX_CH_MULT}, \
                 {MAX_RES_BLOCKS} blocks per level, {MAX_SHARE_QUANT_RESI} φ convolutions)"
            )));
        }
        if self
            .ch_mult
            .iter()
            .any(|m| !(self.ch * m).is_multiple_of(32))
        {
            return bad(
                "every vqvae level width (ch * ch_mult) must be a multiple of 32, the GroupNorm group count",
            );
        }
        if self.decoder_res_blocks == Some(0) {
            return bad("vqvae decoder_res_blocks must be at least 1");
        }
        if self.share_quant_resi < 2 {
            return bad("vqvae share_quant_resi must be at least 2 (partially shared φ)");
        }
        if !(0.0..=1.0).contains(&self.quant_resi) {
            return bad("vqvae quant_resi must lie in [0, 1]");
        }
        Ok(())
    }
}

/// The VAR transformer (paper §3.1/§4, reference `models/var.py`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarConfig {
    /// Number of AdaLN blocks.
    pub depth: usize,
    /// Model width C (the reference uses 64 * depth).
    pub embed_dim: usize,
    /// Attention heads (the reference uses depth heads of width 64).
    pub num_heads: usize,
    /// Class count; the class embedding has one extra row, the null class used for CFG.
    pub num_classes: usize,
    /// FFN hidden width as a multiple of C.
    pub mlp_ratio: f32,
    /// l2-normalised q/k with a learned per-head scale (true for every official model).
    pub attn_l2_norm: bool,
    /// One AdaLN projection shared by all blocks plus a per-block offset (only the 512 px d36).
    pub shared_aln: bool,
}

impl VarConfig {
    /// The official VAR-d{depth}: C = 64 * depth, heads = depth, 1000 ImageNet classes.
    pub fn official(depth: usize) -> Self {
        Self {
            depth,
            embed_dim: 64 * depth,
            num_heads: depth,
            num_classes: 1000,
            mlp_ratio: 4.0,
            attn_l2_norm: true,
            shared_aln: depth >= 36,
        }
    }
    pub fn d16() -> Self {
        Self::official(16)
    }
    pub fn d20() -> Self {
        Self::official(20)
    }
    pub fn d24() -> Self {
        Self::official(24)
    }
    pub fn d30() -> Self {
        Self::official(30)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// FFN hidden width (rounded as the reference's `round(C * mlp_ratio)`).
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f32 * self.mlp_ratio).round() as usize
    }

    pub(crate) fn validate(&self) -> Result<()> {
        use limits::*;
        let bad = |m: &str| Err(VarError::Config(m.to_string()));
        if self.depth == 0 || self.embed_dim == 0 || self.num_heads == 0 || self.num_classes == 0 {
            return bad("var depth, embed_dim, num_heads and num_classes must be positive");
        }
        if self.depth > MAX_DEPTH
            || self.embed_dim > MAX_EMBED_DIM
            || self.num_heads > MAX_HEADS
            || self.num_classes > MAX_CLASSES
        {
            return Err(VarError::Config(format!(
                "the transformer is larger than this reader accepts (at most depth {MAX_DEPTH}, \
                 width {MAX_EMBED_DIM}, {MAX_HEADS} heads, {MAX_CLASSES} classes)"
            )));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0 && self.mlp_ratio <= MAX_MLP_RATIO)
        {
            return Err(VarError::Config(format!(
                "var mlp_ratio must be a number in (0, {MAX_MLP_RATIO}] (got {})",
                self.mlp_ratio
            )));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad("var embed_dim must be divisible by num_heads");
        }
        if self.mlp_hidden() == 0 {
            return bad("var mlp_ratio gives an empty FFN");
        }
        Ok(())
    }
}

/// How tensors are stored in the model directory (`weights::quant`): every precision loads
/// into the same model implementation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    F32,
    /// Every tensor in f16.
    F16,
    /// The transformer's matrices in int8 with f32 scales; everything else in f16.
    Int8,
}

impl std::str::FromStr for Storage {
    type Err = VarError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "int8" => Ok(Self::Int8),
            other => Err(VarError::InvalidArgument(format!(
                "unknown precision '{other}': use f32, f16 or int8"
            ))),
        }
    }
}

/// Everything that describes a model directory (`config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A short name shown in the UI.
    pub name: String,
    /// Side length of generated images in pixels (`patch_nums.last() * downsample_factor`).
    pub image_size: usize,
    /// Side length of each scale's token map, coarse to fine (the paper's h_k = w_k).
    pub patch_nums: Vec<usize>,
    pub vqvae: VqvaeConfig,
    pub var: VarConfig,
    /// One name per class, in label order.
    pub class_names: Vec<String>,
    /// The settings the page and the CLI start from.
    #[serde(default, with = "sampling::recommended")]
    pub sampling: SamplingParams,
    #[serde(default)]
    pub storage: Storage,
    /// How a picture of another size became the model's input in training; editing applies
    /// the same rule to its source ([`ModelConfig::fit_rule`]). Absent in every official
    /// model (they take the centred square).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Fit>,
}

/// How a picture of any size becomes the model's square input (`picture::fit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "lowercase", deny_unknown_fields)]
pub enum Fit {
    /// The centred square, resized to the model's side (the ImageNet convention).
    #[default]
    Crop,
    /// The centred square resized to the model's side less `border` on every side, on a
    /// black canvas: Fashion-MNIST's 28 px garments on 32 px (`border` 2).
    Pad { border: usize },
}

impl Fit {
    /// The side the picture itself is resized to on a `size` canvas.
    pub fn inner_side(&self, size: usize) -> usize {
        match *self {
            Fit::Crop => size,
            Fit::Pad { border } => size.saturating_sub(2 * border),
        }
    }
}

impl std::fmt::Display for Fit {
    /// The command line's spelling: `crop` or `pad:N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fit::Crop => write!(f, "crop"),
            Fit::Pad { border } => write!(f, "pad:{border}"),
        }
    }
}

impl std::str::FromStr for Fit {
    type Err = VarError;
    /// `crop`, or `pad:N` for a border of N pixels.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            VarError::InvalidArgument(format!(
                "unknown fit '{s}': use crop, or pad:N for an N-pixel black border"
            ))
        };
        match s.split_once(':') {
            None if s == "crop" => Ok(Fit::Crop),
            Some(("pad", n)) => Ok(Fit::Pad {
                border: n.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

/// The ImageNet-1k (ILSVRC 2012) class names in label order, the classes of the official
/// models: WordNet lemmas, "tench, Tinca tinca" to "toilet tissue, toilet paper, bathroom
/// tissue" (data, one name per line).
const IMAGENET_CLASSES: &str = include_str!("imagenet_classes.txt");

/// Names for `num_classes` classes: ImageNet's for 1000 (the official models), else
/// "class i".
pub fn default_class_names(num_classes: usize) -> Vec<String> {
    let imagenet: Vec<&str> = IMAGENET_CLASSES.lines().collect();
    if num_classes == imagenet.len() {
        imagenet.into_iter().map(str::to_string).collect()
    } else {
        (0..num_classes).map(|i| format!("class {i}")).collect()
    }
}

impl ModelConfig {
    /// The official 256 px ImageNet model of the given depth (16, 20, 24 or 30).
    pub fn official(depth: usize) -> Self {
        let var = VarConfig::official(depth);
        let class_names = default_class_names(var.num_classes);
        Self {
            name: format!("var-d{depth}"),
            image_size: 256,
            patch_nums: OFFICIAL_PATCH_NUMS.to_vec(),
            vqvae: VqvaeConfig::official(),
            var,
            class_names,
            sampling: SamplingParams::default(),
            storage: Storage::F32,
            fit: None,
        }
    }

    /// The small model trained here on Fashion-MNIST: 28 px garments centred on 32 px RGB,
    /// a factor-4 VQ-VAE (8x8 latent, 512 codes of width 16) and 6 scales (L = 130 tokens),
    /// sized from the measured CPU training costs (ARCHITECTURE.md).
    pub fn fashion_mnist() -> Self {
        Self {
            name: "fashion-mnist".into(),
            image_size: 32,
            patch_nums: vec![1, 2, 3, 4, 6, 8],
            vqvae: VqvaeConfig {
                vocab_size: 512,
                z_channels: 16,
                ch: 32,
                ch_mult: vec![1, 1, 2],
                num_res_blocks: 1,
                decoder_res_blocks: None,
                attn_in_last_level: false,
                attn_in_mid: true,
                in_channels: 3,
                quant_resi: 0.5,
                share_quant_resi: 4,
            },
            // About 1.6M parameters: small enough to ship (with the VQ-VAE, under 10 MB in
            // float32) and to train on two CPU cores in about an hour.
            var: VarConfig {
                depth: 5,
                embed_dim: 128,
                num_heads: 4,
                num_classes: 10,
                mlp_ratio: 4.0,
                attn_l2_norm: true,
                shared_aln: false,
            },
            class_names: FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            sampling: SamplingParams {
                cfg: 3.0,
                top_k: 0,
                top_p: 0.95,
                ..SamplingParams::default()
            },
            storage: Storage::F32,
            fit: Some(Fit::Pad { border: 2 }),
        }
    }

    /// This model at another resolution: `image_size` px with the scale schedule `patch_nums`
    /// (the latent side is its last entry) or, without one, the preset's downsampling and a
    /// schedule like the official one ([`default_patch_nums`]). The VQ-VAE gets as many levels
    /// as the downsampling needs, with the official models' channel multipliers (1, 1, 2, 2,
    /// 4, ...). Checked: the downsampling must be a power of two.
    pub fn at_resolution(
        mut self,
        image_size: usize,
        patch_nums: Option<Vec<usize>>,
    ) -> Result<Self> {
        let bad = |m: String| Err(VarError::InvalidArgument(m));
        if image_size == 0 || image_size > limits::MAX_IMAGE_SIZE {
            return bad(format!(
                "--image-size {image_size} must be between 1 and {}",
                limits::MAX_IMAGE_SIZE
            ));
        }
        let patch_nums = match patch_nums {
            Some(p) => p,
            None => {
                let factor = self.vqvae.downsample_factor();
                if !image_size.is_multiple_of(factor) || image_size / factor < 2 {
                    return bad(format!(
                        "--image-size {image_size} is not a multiple of {factor} (the VQ-VAE's downsampling) of at least {}; pass --patch-nums to choose another",
                        2 * factor
                    ));
                }
                default_patch_nums(image_size / factor)
            }
        };
        validate_patch_nums(&patch_nums)?;
        let latent = *patch_nums.last().expect("validated: at least two scales");
        let factor = image_size / latent;
        if factor * latent != image_size || !factor.is_power_of_two() {
            return bad(format!(
                "--image-size {image_size} must be the last scale {latent} times a power of two (the VQ-VAE's downsampling)"
            ));
        }
        let levels = factor.trailing_zeros() as usize + 1;
        if levels > limits::MAX_LEVELS {
            return bad(format!(
                "--image-size {image_size} over a {latent}x{latent} latent needs {levels} VQ-VAE levels; at most {} are supported",
                limits::MAX_LEVELS
            ));
        }
        const MULTIPLIERS: [usize; 8] = [1, 1, 2, 2, 4, 4, 8, 8];
        self.vqvae.ch_mult = MULTIPLIERS[..levels].to_vec();
        self.image_size = image_size;
        self.patch_nums = patch_nums;
        self.validate()?;
        Ok(self)
    }

    /// How pictures become this model's input: the recorded rule, or the centred square.
    pub fn fit_rule(&self) -> Fit {
        self.fit.unwrap_or_default()
    }

    /// Total token count L = Σ pn².
    pub fn seq_len(&self) -> usize {
        seq_len(&self.patch_nums)
    }

    /// Number of scales (the paper's K).
    pub fn num_scales(&self) -> usize {
        self.patch_nums.len()
    }

    /// Side of the finest latent grid.
    pub fn latent_size(&self) -> usize {
        *self.patch_nums.last().unwrap_or(&0)
    }

    /// Checks every invariant the model code relies on, so later code may index freely.
    pub fn validate(&self) -> Result<()> {
        self.vqvae.validate()?;
        self.var.validate()?;
        validate_patch_nums(&self.patch_nums)?;
        if self.image_size > limits::MAX_IMAGE_SIZE {
            return Err(VarError::Config(format!(
                "image_size {} is larger than this reader accepts ({})",
                self.image_size,
                limits::MAX_IMAGE_SIZE
            )));
        }
        let expected = self.latent_size() * self.vqvae.downsample_factor();
        if self.image_size != expected {
            return Err(VarError::Config(format!(
                "image_size {} does not match the finest scale {} times the VQ-VAE factor {} (= {expected})",
                self.image_size,
                self.latent_size(),
                self.vqvae.downsample_factor()
            )));
        }
        if self.class_names.len() != self.var.num_classes {
            return Err(VarError::Config(format!(
                "{} class names for {} classes",
                self.class_names.len(),
                self.var.num_classes
            )));
        }
        Ok(())
    }

    /// Parses and validates a `config.json`.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| VarError::Json {
            path: origin.to_string(),
            message: format!("not a valid model config: {e}"),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }
}

/// L = Σ pn².
pub fn seq_len(patch_nums: &[usize]) -> usize {
    patch_nums.iter().map(|p| p * p).sum()
}

/// Scales must grow strictly from 1x1 (the class token) to the finest grid.
pub fn validate_patch_nums(patch_nums: &[usize]) -> Result<()> {
    let bad = |m: String| Err(VarError::Config(m));
    if patch_nums.len() > limits::MAX_SCALES || patch_nums.iter().any(|&p| p > limits::MAX_PATCH) {
        return bad(format!(
            "patch_nums has more than {} scales or a scale wider than {}",
            limits::MAX_SCALES,
            limits::MAX_PATCH
        ));
    }
    if patch_nums.len() < 2 {
        return bad(format!(
            "patch_nums {patch_nums:?} needs at least two scales"
        ));
    }
    if patch_nums[0] != 1 {
        return bad(format!(
            "patch_nums {patch_nums:?} must start with 1 (the first scale is the single class token)"
        ));
    }
    if patch_nums.windows(2).any(|w| w[1] <= w[0]) {
        return bad(format!("patch_nums {patch_nums:?} must increase strictly"));
    }
    Ok(())
}

/// A schedule for a `latent`-wide finest map shaped like the official one
/// ([`OFFICIAL_PATCH_NUMS`], which it is for 16): those sides scaled by `latent / 16` and
/// rounded down, from 1.
pub fn default_patch_nums(latent: usize) -> Vec<usize> {
    let mut nums = vec![1];
    for p in OFFICIAL_PATCH_NUMS {
        let scaled = p * latent / 16;
        if scaled > *nums.last().expect("starts with 1") {
            nums.push(scaled);
        }
    }
    nums
}

/// Parses `1,2,3,4` into a validated scale list.
pub fn parse_patch_nums(text: &str) -> Result<Vec<usize>> {
    let nums = text
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            VarError::InvalidArgument(format!(
                "patch nums '{text}' must be comma-separated positive integers, e.g. 1,2,3,4,5,6,8,10,13,16"
            ))
        })?;
    validate_patch_nums(&nums)?;
    Ok(nums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolution_derives_the_vqvae_levels_and_the_schedule() {
        assert_eq!(default_patch_nums(16), OFFICIAL_PATCH_NUMS);
        assert_eq!(default_patch_nums(8), [1, 2, 3, 4, 5, 6, 8]);
        assert_eq!(default_patch_nums(4), [1, 2, 3, 4]);
        let preset = ModelConfig::fashion_mnist();
        // 64 px with the preset's factor 4: a 16x16 latent on the official schedule.
        let c = preset.clone().at_resolution(64, None).unwrap();
        assert_eq!((c.image_size, c.latent_size()), (64, 16));
        assert_eq!(c.patch_nums, OFFICIAL_PATCH_NUMS);
        assert_eq!(c.vqvae.ch_mult, [1, 1, 2]);
        // A schedule of one's own decides the downsampling: 64 over 4 is 16, five levels.
        let c = preset
            .clone()
            .at_resolution(64, Some(vec![1, 2, 4]))
            .unwrap();
        assert_eq!(c.vqvae.ch_mult, [1, 1, 2, 2, 4]);
        assert_eq!(c.vqvae.downsample_factor(), 16);
        // 32 px and the preset's own schedule give the preset back.
        let same = preset
            .clone()
            .at_resolution(32, Some(preset.patch_nums.clone()));
        assert_eq!(same.unwrap(), preset);
        let err = |size, p: Option<Vec<usize>>| {
            preset
                .clone()
                .at_resolution(size, p)
                .unwrap_err()
                .to_string()
        };
        assert!(err(48, Some(vec![1, 2, 5])).contains("power of two"));
        assert!(err(30, None).contains("not a multiple of 4"));
        assert!(err(0, None).contains("between 1 and"));
        assert!(err(64, Some(vec![2, 4])).contains("must start with 1"));
    }

    #[test]
    fn the_fit_rule_reads_writes_and_defaults_to_the_centred_square() {
        assert_eq!("crop".parse::<Fit>().unwrap(), Fit::Crop);
        assert_eq!("pad:2".parse::<Fit>().unwrap(), Fit::Pad { border: 2 });
        assert!("pad".parse::<Fit>().is_err() && "zoom".parse::<Fit>().is_err());
        assert_eq!(Fit::Pad { border: 2 }.inner_side(32), 28);
        for fit in [Fit::Crop, Fit::Pad { border: 3 }] {
            assert_eq!(fit.to_string().parse::<Fit>().unwrap(), fit);
        }
        let preset = ModelConfig::fashion_mnist();
        let json = preset.to_json();
        assert!(json.contains(r#""rule": "pad""#), "{json}");
        assert_eq!(ModelConfig::from_json(&json, "x").unwrap(), preset);
        // Official models record none (their config.json is unchanged): the centred square.
        let official = ModelConfig::official(16);
        assert!(!official.to_json().contains(r#""fit""#));
        assert_eq!(official.fit_rule(), Fit::Crop);
        let unknown = json.replace(r#""rule": "pad""#, r#""rule": "zoom""#);
        assert!(ModelConfig::from_json(&unknown, "x").is_err());
    }

    #[test]
    fn official_models_name_the_imagenet_classes() {
        let names = ModelConfig::official(16).class_names;
        assert_eq!(names.len(), 1000);
        assert_eq!(names[0], "tench, Tinca tinca");
        assert_eq!(names[281], "tabby, tabby cat");
        assert_eq!(names[400], "academic gown, academic robe, judge's robe");
        assert_eq!(names[999], "toilet tissue, toilet paper, bathroom tissue");
        // Names are what the page's picker searches: none empty, no stray whitespace.
        assert!(names.iter().all(|n| !n.is_empty() && n.trim() == n));
        assert_eq!(default_class_names(3), ["class 0", "class 1", "class 2"]);
    }

    #[test]
    fn official_sizes() {
        let c = ModelConfig::official(16);
        c.validate().unwrap();
        assert_eq!(c.seq_len(), 680);
        assert_eq!(c.vqvae.downsample_factor(), 16);
        assert_eq!(c.var.head_dim(), 64);
        assert_eq!(c.var.mlp_hidden(), 4096);
    }

    #[test]
    fn fashion_preset_is_consistent() {
        let c = ModelConfig::fashion_mnist();
        c.validate().unwrap();
        assert_eq!(c.seq_len(), 130);
        assert_eq!(c.vqvae.downsample_factor(), 4);
    }

    #[test]
    fn unknown_fields_and_sizes_past_the_limits_are_refused_before_anything_is_built() {
        let json = |c: &ModelConfig| serde_json::to_value(c).unwrap();
        let parse = |v: serde_json::Value| ModelConfig::from_json(&v.to_string(), "config.json");
        let mut v = json(&ModelConfig::fashion_mnist());
        v["var"]["depth_multiplier"] = 2.into();
        let err = parse(v).unwrap_err().to_string();
        assert!(err.contains("depth_multiplier"), "{err}");
        let mut v = json(&ModelConfig::fashion_mnist());
        v["surprise"] = true.into();
        assert!(parse(v).unwrap_err().to_string().contains("surprise"));

        for (part, field, value) in [
            ("var", "depth", serde_json::Value::from(1_000_000)),
            ("var", "embed_dim", (1u64 << 40).into()),
            ("var", "mlp_ratio", 1e30.into()),
            ("vqvae", "vocab_size", (1u64 << 40).into()),
            ("vqvae", "ch", (1u64 << 40).into()),
        ] {
            let mut v = json(&ModelConfig::fashion_mnist());
            v[part][field] = value;
            let err = parse(v).unwrap_err().to_string();
            assert!(
                err.contains("invalid configuration"),
                "{part}.{field}: {err}"
            );
        }
        let mut v = json(&ModelConfig::fashion_mnist());
        v["vqvae"]["ch_mult"] = serde_json::Value::from(vec![1; 40]);
        assert!(parse(v).unwrap_err().to_string().contains("levels"));
        let mut c = ModelConfig::fashion_mnist();
        c.patch_nums = (1..=40).collect();
        assert!(c.validate().unwrap_err().to_string().contains("scales"));
        // The largest official model stays inside the limits.
        let mut d36 = ModelConfig::official(30);
        d36.var = VarConfig::official(36);
        d36.patch_nums = vec![1, 2, 3, 4, 6, 9, 13, 18, 24, 32];
        d36.image_size = 512;
        d36.validate().unwrap();
    }

    #[test]
    fn json_round_trip() {
        let c = ModelConfig::official(20);
        let back = ModelConfig::from_json(&c.to_json(), "test").unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn bad_patch_nums_are_refused() {
        assert!(parse_patch_nums("1,2,x").is_err());
        assert!(parse_patch_nums("2,3").is_err());
        assert!(parse_patch_nums("1,3,3").is_err());
        assert!(parse_patch_nums("1").is_err());
        assert_eq!(parse_patch_nums("1, 2,4").unwrap(), vec![1, 2, 4]);
    }

    #[test]
    fn inconsistent_image_size_is_refused() {
        let mut c = ModelConfig::official(16);
        c.image_size = 128;
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("image_size 128"), "{msg}");
    }
}
