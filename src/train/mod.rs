//! Training (native only): the Fashion-MNIST data and the VQ-VAE loss. The training commands,
//! the transformer trainer and evaluation are the next steps of the training milestone.

pub mod data;
pub mod vqvae;
