//! Training (native only): Fashion-MNIST, the VQ-VAE and transformer trainers, the project's
//! classifier, evaluation and the plots they write.

pub mod classifier;
pub mod data;
pub mod eval;
pub mod plot;
pub mod run;
pub mod var;
pub mod vqvae;

/// The Fashion-MNIST preset shrunk to run in a test: 8 px, 3 scales, 16 codes.
#[cfg(test)]
pub(crate) fn tiny_config() -> crate::ModelConfig {
    let mut c = crate::ModelConfig::fashion_mnist();
    c.image_size = 8;
    c.patch_nums = vec![1, 2, 4];
    c.vqvae.vocab_size = 16;
    c.vqvae.z_channels = 4;
    c.vqvae.ch_mult = vec![1, 1];
    c.var.depth = 1;
    c.var.embed_dim = 32;
    c.var.num_heads = 2;
    c
}
