//! Building a sharded model one shard at a time.
//!
//! Each shard is checked against the manifest as it arrives, its tensors are decoded and put
//! where the model will use them (on a GPU: device buffers, with int8 transformer matrices
//! packed as the int8 kernel reads them; on the CPU: f32, which is what the model holds
//! there), and the shard's bytes can go before the next one comes. A browser therefore holds
//! one shard in wasm memory at a time instead of the whole download (0.5 GB for VAR-d16 in
//! int8, more than the wasm heap should carry next to the model on the CPU), and the model
//! is assembled from the staged tensors at the end by the same loader as every other source.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};

use super::{CONFIG_FILE, LoadOptions};
use crate::config::ModelConfig;
use crate::error::{Result, VarError};
use crate::kernels::int8::Int8Weight;
use crate::kernels::is_gpu;
use crate::model::Model;
use crate::weights::quant::StoredAs;
use crate::weights::shards::{Manifest, Part};
use crate::weights::{OnDevice, TensorSource, check_finite, check_shape, is_recomputed_buffer};

/// A tensor that has left its shard.
enum Staged {
    /// f32 values on the host (CPU devices: the model takes them as they are).
    Host(Vec<f32>),
    Device(Box<OnDevice>),
}

/// One part's staged tensors, handed to the loader as a [`TensorSource`].
#[derive(Default)]
struct StagedSource {
    tensors: BTreeMap<String, (Vec<usize>, Staged)>,
}

impl TensorSource for StagedSource {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.tensors.remove(key) {
            None => Err(VarError::MissingTensor {
                key: key.to_string(),
                shape: shape.to_vec(),
            }),
            Some((found, Staged::Host(values))) => {
                check_shape(key, shape, &found)?;
                Ok(values)
            }
            // Reading a device tensor back would block, which a browser cannot do; the loader
            // always asks `take_on_device` first, so this is a bug, not bad input.
            Some((found, staged)) => {
                self.tensors.insert(key.to_string(), (found, staged));
                Err(VarError::InvalidArgument(format!(
                    "tensor '{key}' is staged on the device and cannot be read back"
                )))
            }
        }
    }

    fn unused(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn take_on_device(&mut self, key: &str, shape: &[usize]) -> Result<Option<OnDevice>> {
        if !matches!(self.tensors.get(key), Some((_, Staged::Device(_)))) {
            return Ok(None);
        }
        let Some((found, Staged::Device(tensor))) = self.tensors.remove(key) else {
            unreachable!("matched above")
        };
        check_shape(key, shape, &found)?;
        Ok(Some(*tensor))
    }
}

/// A sharded model being loaded: shards in any order, each once, then [`Self::finish`].
pub struct StagedModel {
    config: ModelConfig,
    manifest: Manifest,
    device: Device,
    /// Stage tensors in device memory (a GPU, unless the tensors are to be re-stored).
    gpu: bool,
    options: LoadOptions,
    parts: BTreeMap<Part, StagedSource>,
    added: Vec<bool>,
}

impl StagedModel {
    /// `config_json` is the model's `config.json`; tensors will be staged on `device`. With
    /// `options.read_as`, they are staged on the host and re-stored as the loader takes them
    /// (a comparison of precisions, not the browser's path).
    pub fn new(
        config_json: &str,
        manifest: Manifest,
        device: &Device,
        options: &LoadOptions,
    ) -> Result<Self> {
        let config = ModelConfig::from_json(config_json, CONFIG_FILE)?;
        manifest.check_config(config_json)?;
        Ok(Self {
            config,
            added: vec![false; manifest.shards.len()],
            manifest,
            device: device.clone(),
            gpu: is_gpu(device) && options.read_as.is_none(),
            options: *options,
            parts: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks shard `index` against the manifest and stages its tensors; the caller may drop
    /// `bytes` afterwards. A shard that fails stages nothing.
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        let source = self.manifest.open_shard(index, bytes)?;
        let shard = &self.manifest.shards[index];
        if self.added[index] {
            return Err(VarError::Shard {
                file: shard.file.clone(),
                message: "was already added".into(),
            });
        }
        let mut source = source;
        let names = source.names();
        let empty = BTreeMap::new();
        let table = self.manifest.tensors.get(&shard.part).unwrap_or(&empty);
        let mut staged = Vec::with_capacity(names.len());
        for name in &names {
            // A matrix's `.scales` are read with it (they share a shard); a stray one is
            // staged like any tensor, so the loader reports it as unused.
            let scales_of = name.strip_suffix(".scales");
            if is_recomputed_buffer(name) || scales_of.is_some_and(|m| names.iter().any(|n| n == m))
            {
                continue;
            }
            // `open_shard` checked that the manifest lists every tensor of the shard.
            let shape = table[name].shape.clone();
            let kernel_layout = self.gpu
                && shard.part == Part::Var
                && shape.len() == 2
                && shape[1].is_multiple_of(4);
            let int8 = if kernel_layout {
                source.take_int8(name, &shape)?
            } else {
                None
            };
            let tensor = match int8 {
                Some((codes, scales)) => {
                    let weight = Int8Weight::new(&codes, scales, shape[1], shape[0], &self.device)?;
                    Staged::Device(Box::new(OnDevice::Int8(weight)))
                }
                None => {
                    let values = source.take(name, &shape)?;
                    check_finite(name, &values)?;
                    if self.gpu {
                        let len = values.len();
                        let t = Tensor::from_data(TensorData::new(values, [len]), &self.device);
                        Staged::Device(Box::new(OnDevice::Float(t)))
                    } else {
                        Staged::Host(values)
                    }
                }
            };
            staged.push((name.clone(), (shape, tensor)));
        }
        self.parts
            .entry(shard.part)
            .or_default()
            .tensors
            .extend(staged);
        self.added[index] = true;
        Ok(())
    }

    /// The shards not added yet, by file name.
    pub fn missing(&self) -> Vec<&str> {
        self.manifest
            .shards
            .iter()
            .zip(&self.added)
            .filter(|(_, added)| !**added)
            .map(|(s, _)| s.file.as_str())
            .collect()
    }

    /// Builds the model from the staged tensors; every shard must have been added.
    pub fn finish(mut self) -> Result<Model> {
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(VarError::InvalidArgument(format!(
                "shards not loaded yet: {}",
                missing.join(", ")
            )));
        }
        let mut vqvae = self.parts.remove(&Part::Vqvae).unwrap_or_default();
        let mut var = self.parts.remove(&Part::Var).unwrap_or_default();
        match self.options.read_as {
            None => Model::from_sources(
                self.config,
                &mut vqvae,
                &mut var,
                &self.device,
                self.options.kernels,
            ),
            Some(storage) => {
                let mut config = self.config;
                config.storage = storage;
                let mut vqvae = StoredAs::new(vqvae, storage, false);
                let mut var = StoredAs::new(var, storage, true);
                Model::from_sources(
                    config,
                    &mut vqvae,
                    &mut var,
                    &self.device,
                    self.options.kernels,
                )
            }
        }
    }
}
