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
pub mod cpu_kernels;
pub mod edit;
pub mod error;
pub mod generate;
pub mod kernels;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod picture;
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

pub use config::ModelConfig;

/// The shipped model (trained here on Fashion-MNIST), relative to the repository root: what
/// the page loads and what `var generate` and `var eval` use without `--model`.
pub const DEFAULT_MODEL_DIR: &str = "www/models/fashion-mnist";

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
pub use error::{Result, VarError};
pub use generate::{EditSource, ScaleStep, generate};
pub use model::Model;
pub use sampler::SamplingParams;
