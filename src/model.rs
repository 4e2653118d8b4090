//! A complete model: configuration, VQ-VAE and transformer on one device.

use burn::tensor::Device;

use crate::config::{ModelConfig, Storage};
use crate::error::Result;
use crate::nn::{Loader, RandomSource};
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
}

impl Model {
    /// Builds both networks from reference-named tensors, refusing missing, misshapen or
    /// unused tensors.
    pub fn from_sources(
        config: ModelConfig,
        vqvae: &mut dyn TensorSource,
        var: &mut dyn TensorSource,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut w = Loader::new(vqvae, device);
        let vq = VqVae::load(&mut w, &config.vqvae, &config.patch_nums)?;
        w.finish()?;
        let mut w = Loader::new(var, device);
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
        })
    }

    /// Random weights (N(0, 0.02²)) at the given configuration: benchmarks at official shapes,
    /// and the starting point of training.
    pub fn random(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut vq = RandomSource::new(seed, 0.02);
        let mut tr = RandomSource::new(seed.wrapping_add(1), 0.02);
        Self::from_sources(config, &mut vq, &mut tr, device)
    }

    /// Random weights as [`Self::random`], read back as if stored at `storage` (int8 stays
    /// int8 on a GPU): benchmarks of reduced precision at official shapes, without a file.
    pub fn random_stored(
        mut config: ModelConfig,
        seed: u64,
        storage: Storage,
        device: &Device,
    ) -> Result<Self> {
        config.storage = storage;
        let mut vq = StoredAs::new(RandomSource::new(seed, 0.02), storage, false);
        let mut tr = StoredAs::new(RandomSource::new(seed.wrapping_add(1), 0.02), storage, true);
        Self::from_sources(config, &mut vq, &mut tr, device)
    }

    /// A model from networks already built on `device` (training assembles one to sample from).
    pub fn from_parts(config: ModelConfig, vqvae: VqVae, var: Var, device: &Device) -> Self {
        Self {
            config,
            vqvae,
            var,
            device: device.clone(),
        }
    }

    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// Packs the transformer's f32 Linear layers and the VQ-VAE's convolutions for our CPU
    /// kernels ([`crate::kernels::cpu`])
    /// when the model runs on the plain CPU device of an x86-64 machine with AVX2 or AVX-512;
    /// returns whether it did. Inference only: a packed layer has no burn parameters, so a
    /// packed model can neither train nor be exported (`var generate`, `inpaint`, `bench`,
    /// `eval` and `verify` pack; conversion, training and `random-checkpoint` do not).
    pub fn use_cpu_kernels(&mut self) -> bool {
        if !crate::kernels::cpu::CpuLinear::supported()
            || self.device.is_autodiff()
            || crate::kernels::is_gpu(&self.device)
        {
            return false;
        }
        self.var.pack_for_cpu();
        self.vqvae.pack_for_cpu();
        true
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
