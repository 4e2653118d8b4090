//! Training (native only): the data (Fashion-MNIST or an image folder), the device, the
//! VQ-VAE and transformer trainers, the project's classifier, their learning-rate schedules,
//! evaluation and the plots they write.

pub mod classifier;
pub mod data;
pub mod device;
pub mod eval;
pub mod parallel;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod var;
pub mod vqvae;

/// The Fashion-MNIST preset shrunk to run in a test: 8 px, 3 scales, 16 codes.
#[cfg(test)]
pub(crate) fn tiny_config() -> crate::config::ModelConfig {
    let mut c = crate::config::ModelConfig::fashion_mnist();
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

/// Every tensor of a safetensors file, sorted by name, for comparing checkpoints in tests.
#[cfg(test)]
pub(crate) fn tensors_of(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let src = crate::weights::safetensors::SafetensorsSource::new(&bytes, "test").unwrap();
    let mut all: Vec<(String, Vec<f32>)> = src
        .names()
        .into_iter()
        .map(|n| (n.clone(), src.read_any(&n).unwrap().1))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The largest absolute difference between two [`tensors_of`] lists with the same names.
#[cfg(test)]
pub(crate) fn largest_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((ka, va), (kb, vb))| {
            assert_eq!(ka, kb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0f32, f32::max)
}
