//! `var train vqvae --grow-from`: a trained VQ-VAE loaded into a model with more ResnetBlocks
//! per decoder level, the added blocks starting as the identity so that step 0 reconstructs
//! exactly as the checkpoint does.

use std::path::Path;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::error::{Result, VarError};
use crate::modeldir::VQVAE_FILE;
use crate::nn::{Loader, RandomSource};
use crate::vqvae::VqVae;
use crate::weights::TensorSource;
use crate::weights::safetensors::SafetensorsSource;

/// The weights of a trained VQ-VAE for the same model with more ResnetBlocks per decoder
/// level: every tensor the checkpoint holds comes from it (and all must be used), and a
/// decoder block it lacks starts as the identity: its norms and first convolution as a fresh
/// model's, its second convolution zero, so the block adds nothing until training moves it.
struct GrownDecoderSource<'a> {
    trained: SafetensorsSource<'a>,
    fresh: RandomSource,
}

impl TensorSource for GrownDecoderSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.trained.take(key, shape) {
            Err(VarError::MissingTensor { .. }) if key.starts_with("decoder.up.") => {
                let values = self.fresh.take(key, shape)?;
                Ok(if key.contains(".conv2.") {
                    vec![0.0; values.len()]
                } else {
                    values
                })
            }
            other => other,
        }
    }
    fn unused(&self) -> Vec<String> {
        self.trained.unused()
    }
}

/// `checkpoint`'s VQ-VAE with `blocks` ResnetBlocks per decoder level, see
/// [`GrownDecoderSource`].
pub(super) fn grow_decoder(
    checkpoint: &Path,
    blocks: usize,
    seed: u64,
    device: &Device,
) -> Result<(ModelConfig, VqVae)> {
    let mut config = crate::train::run::read_config(checkpoint)?;
    let before = config.vqvae.decoder_blocks_per_level();
    if blocks <= before {
        return Err(VarError::InvalidArgument(format!(
            "--decoder-res-blocks {blocks}: the checkpoint's decoder already has {before} blocks per level; growing needs more"
        )));
    }
    config.vqvae.decoder_res_blocks = Some(blocks);
    config.validate()?;
    let path = checkpoint.join(VQVAE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| VarError::io(&path, e))?;
    let mut src = GrownDecoderSource {
        trained: SafetensorsSource::new(&bytes, &path.display().to_string())?,
        fresh: RandomSource::new(seed, 0.02),
    };
    let mut w = Loader::new(&mut src, device);
    let vae = VqVae::load(&mut w, &config.vqvae, &config.patch_nums)?;
    w.finish()?;
    Ok((config, vae))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::modeldir::CONFIG_FILE;
    use crate::nn::export::export_module;
    use crate::weights::safetensors::safetensors_bytes;
    use burn::tensor::{Distribution, Tensor};

    #[test]
    fn a_grown_decoder_reconstructs_exactly_as_its_checkpoint() {
        let device = Device::flex();
        let config = crate::train::tiny_config();
        let model = Model::random(config.clone(), 5, &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let weights = safetensors_bytes(&export_module(&model.vqvae).unwrap()).unwrap();
        std::fs::write(dir.path().join(VQVAE_FILE), &weights).unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), config.to_json()).unwrap();

        let blocks = config.vqvae.decoder_blocks_per_level() + 2;
        let (grown_config, grown) = grow_decoder(dir.path(), blocks, 9, &device).unwrap();
        assert_eq!(grown_config.vqvae.decoder_res_blocks, Some(blocks));
        let grown_keys = export_module(&grown).unwrap().len();
        assert!(grown_keys > export_module(&model.vqvae).unwrap().len());

        let f = Tensor::<4>::random(
            [2, config.vqvae.z_channels, 4, 4],
            Distribution::Default,
            &device,
        );
        let before = model
            .vqvae
            .decode(f.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let after = grown.decode(f).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(before, after, "the added blocks must start as the identity");

        // Not deeper than the checkpoint: refused with the reason.
        let err = grow_decoder(dir.path(), blocks - 2, 9, &device).unwrap_err();
        assert!(err.to_string().contains("already has"), "{err}");
    }
}
