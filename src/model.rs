//! A complete model: configuration, VQ-VAE and transformer on one device.

use burn::tensor::{Device, Tensor};

use crate::config::{ModelConfig, Storage};
use crate::error::{Result, VarError};
use crate::nn::{Kernels, Loader, RandomSource};
use crate::transformer::Var;
use crate::vqvae::VqVae;
use crate::weights::TensorSource;
use crate::weights::quant::StoredAs;

#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub vqvae: VqVae,
    pub var: Var,
    device: Device,
    /// Whether the layers were packed for the CPU kernels (see [`Kernels::CpuPacked`]).
    cpu_packed: bool,
}

/// The depths of the official 256 px models.
pub const OFFICIAL_DEPTHS: [usize; 4] = [16, 20, 24, 30];

impl Model {
    /// Builds both networks from reference-named tensors for `kernels`, refusing missing,
    /// misshapen or unused tensors.
    pub fn from_sources(
        config: ModelConfig,
        vqvae: &mut dyn TensorSource,
        var: &mut dyn TensorSource,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Self> {
        config.validate()?;
        let mut w = Loader::new(vqvae, device).with_kernels(kernels);
        let cpu_packed = w.packs_for_cpu();
        let vq = VqVae::load(&mut w, &config.vqvae, &config.patch_nums)?;
        w.finish()?;
        let mut w = Loader::new(var, device).with_kernels(kernels);
        let tr = Var::load(
            &mut w,
            &config.var,
            &config.patch_nums,
            config.vqvae.vocab_size,
            config.vqvae.z_channels,
        )?;
        w.finish()?;
        Ok(Self {
            config,
            vqvae: vq,
            var: tr,
            device: device.clone(),
            cpu_packed,
        })
    }

    /// Random weights (N(0, 0.02²)) at the given configuration: benchmarks at official shapes,
    /// and the starting point of training.
    pub fn random(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut vq = RandomSource::new(seed, 0.02);
        let mut tr = RandomSource::new(seed.wrapping_add(1), 0.02);
        Self::from_sources(config, &mut vq, &mut tr, device, Kernels::Burn)
    }

    /// Random weights as [`Self::random`], read back as if stored at `storage` (int8 stays
    /// int8 on a GPU), built for `kernels`: benchmarks of reduced precision at official
    /// shapes, without a file.
    pub fn random_stored(
        mut config: ModelConfig,
        seed: u64,
        storage: Storage,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Self> {
        config.storage = storage;
        let mut vq = StoredAs::new(RandomSource::new(seed, 0.02), storage, false);
        let mut tr = StoredAs::new(RandomSource::new(seed.wrapping_add(1), 0.02), storage, true);
        Self::from_sources(config, &mut vq, &mut tr, device, kernels)
    }

    /// The official 256 px VAR-d`depth` with random weights (seed 0) stored at `storage`: what
    /// `var bench` and the bench page run without the official files.
    pub fn random_official(
        depth: usize,
        storage: Storage,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Self> {
        let mut config = ModelConfig::official(official_depth(depth)?);
        config.name = format!("VAR-d{depth} (random)");
        Self::random_stored(config, 0, storage, device, kernels)
    }

    /// A model from networks already built on `device` (training assembles one to sample from).
    pub fn from_parts(config: ModelConfig, vqvae: VqVae, var: Var, device: &Device) -> Self {
        Self {
            config,
            vqvae,
            var,
            device: device.clone(),
            cpu_packed: false,
        }
    }

    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// f̂ `[B, Cvae, n, n]` decoded to images `[B, 3, n·f, n·f]` in [0, 1] (f the VQ-VAE's
    /// downsampling factor): the one decode behind final images, previews and reconstructions.
    pub fn decode(&self, f_hat: Tensor<4>) -> Tensor<4> {
        (self.vqvae.fhat_to_img(f_hat) + 1.0) * 0.5
    }

    /// A cheaper look at f̂: its decode after area-averaging it to `side`² latent positions, an
    /// image `side · f` px across, or [`Self::decode`] when the latent is no larger than
    /// `side`. The decoder is convolutional, so a smaller latent decodes to a smaller image of
    /// the same picture, at (side / n)² of the full decode's cost.
    pub fn decode_at(&self, f_hat: Tensor<4>, side: usize) -> Tensor<4> {
        let n = self.config.latent_size();
        if side >= n {
            return self.decode(f_hat);
        }
        let down = crate::vqvae::resample::area_matrix(side.max(1), n).to_tensor(&self.device);
        self.decode(crate::vqvae::resample::resample(f_hat, &down))
    }

    /// Whether the layers run on our CPU kernels ([`Kernels::CpuPacked`] on a CPU that has
    /// them). Such a model can neither train nor be exported.
    pub fn uses_cpu_kernels(&self) -> bool {
        self.cpu_packed
    }

    /// `[B, 3, H, W]` in [0, 1] → 8-bit RGB images, one `Vec` of `H·W·3` bytes per row, rounded
    /// as `(x·255).round()` like the reference's saving code.
    pub fn to_rgb8(images01: &[f32], batch: usize, size: usize) -> Vec<Vec<u8>> {
        let plane = size * size;
        (0..batch)
            .map(|b| {
                let img = &images01[b * 3 * plane..(b + 1) * 3 * plane];
                (0..plane)
                    .flat_map(|p| {
                        (0..3).map(move |c| {
                            (img[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// `depth` when it is one of the official models' ([`OFFICIAL_DEPTHS`]), else a sentence.
pub fn official_depth(depth: usize) -> Result<usize> {
    if OFFICIAL_DEPTHS.contains(&depth) {
        Ok(depth)
    } else {
        Err(VarError::InvalidArgument(format!(
            "there is no official VAR-d{depth}: the depths are 16, 20, 24 and 30"
        )))
    }
}
