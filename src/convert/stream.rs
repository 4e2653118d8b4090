//! The one definition of conversion, tensor by tensor: [`Conversion`] reads an official
//! VQ-VAE and transformer checkpoint one tensor at a time, stores each at the chosen
//! precision and packs it into shards as they fill, so that it never holds more than one
//! tensor and one shard. `var convert` writes its shards to a directory; the page writes them
//! to the browser's storage. Both run this code, so the same files give byte-identical shards
//! and the same manifest (whose SHA-256 is the model's fingerprint).

use crate::config::{ModelConfig, Storage};
use crate::error::{Result, VarError};
use crate::weights::check_finite;
use crate::weights::is_recomputed_buffer;
use crate::weights::pth::{PthError, PthFile};
use crate::weights::quant::store;
use crate::weights::shards::{DEFAULT_SHARD_BYTES, Manifest, Part, ShardWriter, sha256_hex};

use super::infer_config;

/// One checkpoint being converted: the file, what to call it in messages, its tensor names.
struct Input {
    file: PthFile,
    name: String,
    keys: Vec<String>,
}

impl Input {
    fn new(file: PthFile, name: &str) -> Self {
        let keys = file
            .keys()
            .filter(|k| !is_recomputed_buffer(k))
            .map(str::to_owned)
            .collect();
        Self {
            file,
            name: name.to_owned(),
            keys,
        }
    }
}

/// A shard as it is finished: its file name and bytes (already recorded in the manifest).
pub struct Shard {
    pub file: String,
    pub bytes: Vec<u8>,
}

/// What a finished conversion wrote besides its shards.
#[derive(Debug)]
pub struct Converted {
    pub config: ModelConfig,
    pub config_json: String,
    pub manifest: Manifest,
    pub manifest_json: String,
}

impl Converted {
    /// The model's fingerprint: the SHA-256 of its `manifest.json`, which names every shard's
    /// SHA-256, so two conversions agree on it exactly when they wrote the same bytes.
    pub fn fingerprint(&self) -> String {
        sha256_hex(self.manifest_json.as_bytes())
    }
}

/// Refuses two checkpoints that are not a VQ-VAE and a transformer, in that order, with a
/// sentence naming the file, before any tensor is read.
fn check_roles((vae, vae_name): (&PthFile, &str), (var, var_name): (&PthFile, &str)) -> Result<()> {
    const VAE_KEY: &str = "encoder.conv_in.weight";
    const VAR_KEY: &str = "class_emb.weight";
    let (vae_ok, var_ok) = (vae.get(VAE_KEY).is_some(), var.get(VAR_KEY).is_some());
    if vae_ok && var_ok {
        return Ok(());
    }
    let message = if vae.get(VAR_KEY).is_some() && var.get(VAE_KEY).is_some() {
        format!(
            "{vae_name} is a VAR transformer and {var_name} a VQ-VAE: the two files are swapped"
        )
    } else if !vae_ok {
        format!("{vae_name} is not a VAR VQ-VAE checkpoint: it has no tensor {VAE_KEY}")
    } else {
        format!("{var_name} is not a VAR transformer checkpoint: it has no tensor {VAR_KEY}")
    };
    Err(VarError::WrongFile(message))
}

/// A conversion in progress (see the module documentation). Drive it with [`step`] until
/// [`is_done`], writing every returned shard, then [`finish`] for the config and manifest.
///
/// [`step`]: Conversion::step
/// [`is_done`]: Conversion::is_done
/// [`finish`]: Conversion::finish
pub struct Conversion {
    config: ModelConfig,
    /// The VQ-VAE, then the transformer.
    inputs: [Input; 2],
    /// Which input, and which of its tensors, comes next.
    input: usize,
    next: usize,
    writer: Option<ShardWriter>,
    manifest: Manifest,
    shard_bytes: usize,
    storage: Storage,
    done_tensors: usize,
    done_bytes: u64,
}

impl Conversion {
    /// Reads the two checkpoints' tensor tables (not their values), infers and checks the
    /// configuration. `vae_name` and `var_name` name the files in errors; `shard_bytes` is the
    /// largest shard (`None`: the default, 64 MiB).
    pub fn new(
        (vae, vae_name): (PthFile, &str),
        (var, var_name): (PthFile, &str),
        patch_nums: &[usize],
        model_name: &str,
        storage: Storage,
        shard_bytes: Option<usize>,
    ) -> Result<Self> {
        check_roles((&vae, vae_name), (&var, var_name))?;
        let vae_shapes = |k: &str| vae.get(k).map(|t| t.shape.clone());
        let var_shapes = |k: &str| var.get(k).map(|t| t.shape.clone());
        let mut config = infer_config(&vae_shapes, &var_shapes, patch_nums, model_name)?;
        config.storage = storage;
        let shard_bytes = shard_bytes.unwrap_or(DEFAULT_SHARD_BYTES);
        Ok(Self {
            config,
            inputs: [Input::new(vae, vae_name), Input::new(var, var_name)],
            input: 0,
            next: 0,
            writer: Some(ShardWriter::new(Part::Vqvae, shard_bytes)),
            manifest: Manifest::new(shard_bytes),
            shard_bytes,
            storage,
            done_tensors: 0,
            done_bytes: 0,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Tensors converted so far, and in all.
    pub fn tensors(&self) -> (usize, usize) {
        let total = self.inputs.iter().map(|i| i.keys.len()).sum();
        (self.done_tensors, total)
    }

    /// Bytes of checkpoint tensor data read so far, and in all (as the tensor tables say).
    pub fn bytes(&self) -> (u64, u64) {
        let total = self
            .inputs
            .iter()
            .flat_map(|i| i.keys.iter().filter_map(|k| i.file.get(k)))
            .map(|t| t.data_bytes())
            .sum();
        (self.done_bytes, total)
    }

    pub fn is_done(&self) -> bool {
        self.input >= self.inputs.len()
    }

    /// Converts the next tensor; returns the shards it completed (none, or one, or two when
    /// the tensor both overflowed a shard and was its part's last).
    pub fn step(&mut self) -> Result<Vec<Shard>> {
        let Some(input) = self.inputs.get(self.input) else {
            return Err(VarError::InvalidArgument(
                "the conversion has already converted every tensor".into(),
            ));
        };
        let part = if self.input == 0 {
            Part::Vqvae
        } else {
            Part::Var
        };
        let writer = self.writer.as_mut().expect("a writer while tensors remain");
        let mut finished = Vec::new();
        if let Some(key) = input.keys.get(self.next) {
            let annotate = |e: PthError| VarError::Checkpoint {
                path: input.name.clone(),
                source: Box::new(e),
            };
            let t = input
                .file
                .get(key)
                .ok_or_else(|| annotate(PthError::UnknownKey(key.clone())))?;
            let (shape, data_bytes) = (t.shape.clone(), t.data_bytes());
            let values = input.file.read_f32(key).map_err(annotate)?;
            check_finite(key, &values)?;
            let tensor = (key.clone(), shape, values);
            let unit = store(
                std::slice::from_ref(&tensor),
                self.storage,
                part == Part::Var,
                0,
            );
            drop(tensor);
            finished.extend(writer.push(&mut self.manifest, unit)?);
            self.next += 1;
            self.done_tensors += 1;
            self.done_bytes += data_bytes;
        }
        if self.next >= input.keys.len() {
            // This part is complete: its last shard, then the next part's writer.
            let writer = self.writer.take().expect("a writer while tensors remain");
            finished.extend(writer.finish(&mut self.manifest)?);
            self.input += 1;
            self.next = 0;
            if self.input < self.inputs.len() {
                self.writer = Some(ShardWriter::new(Part::Var, self.shard_bytes));
            }
        }
        Ok(finished
            .into_iter()
            .map(|(file, bytes)| Shard { file, bytes })
            .collect())
    }

    /// The config and manifest, once every tensor is converted.
    pub fn finish(self) -> Result<Converted> {
        if !self.is_done() {
            let (done, total) = self.tensors();
            return Err(VarError::InvalidArgument(format!(
                "the conversion is unfinished: {done} of {total} tensors converted"
            )));
        }
        let config_json = self.config.to_json();
        let mut manifest = self.manifest;
        manifest.seal(&config_json);
        let manifest_json = manifest.to_json();
        Ok(Converted {
            config: self.config,
            config_json,
            manifest,
            manifest_json,
        })
    }
}
