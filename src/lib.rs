//! VAR — *Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction*
//! (Tian et al., 2024) — in Rust on burn, built to run natively and in the browser.
//!
//! Module map (paper section → module):
//! - §3.2 multi-scale VQ-VAE: [`vqvae`] (encoder, decoder, [`vqvae::quantizer`] with
//!   Algorithms 1 and 2 and φ, [`vqvae::resample`] with the reference's area/bicubic resampling)
//! - §3.1 next-scale prediction transformer: [`transformer`] (AdaLN blocks, l2-normalised
//!   attention, KV cache, teacher-forced forward with the block-causal mask)
//! - §4 sampling with CFG, top-k/top-p, Gumbel smoothing: [`sampler`]
//! - the coarse-to-fine loop, with a per-scale callback and the editing seam: [`generate`]
//! - §4 zero-shot in-painting, out-painting and editing: [`edit`]
//! - the generation benchmark (native and browser): [`bench`]
//! - configuration and presets: [`config`]; weights, the model directory and the official
//!   checkpoint import: [`weights`]; parity checks against the reference: [`verify`]

#[cfg(not(target_arch = "wasm32"))]
pub mod agreement;
pub mod bench;
pub mod config;
pub mod convert;
#[cfg(not(target_arch = "wasm32"))]
pub mod devices;
pub mod edit;
pub mod error;
pub mod files;
pub mod generate;
pub mod hash;
pub mod kernels;
pub mod model;
pub mod modeldir;
pub mod nn;
pub mod picture;
pub mod readback;
pub mod rng;
pub mod sampler;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
pub mod transformer;
pub mod verify;
pub mod vqvae;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;

pub use config::{FASHION_MNIST_CLASSES, ModelConfig, SamplingParams};

pub use error::{Result, VarError};
pub use generate::{EditSource, ScaleStep, generate};
pub use model::Model;
pub use modeldir::DEFAULT_MODEL_DIR;
