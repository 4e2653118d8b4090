//! Our model directory: one API to load and write it, sharded or not, at any storage.
//!
//! A model directory holds `config.json` ([`ModelConfig`]), `vqvae.safetensors` and
//! `var.safetensors`. Tensors keep the reference implementation's key names and layouts, so the
//! one key table is the modules' `load` functions and a converted official checkpoint is
//! byte-for-byte the same numbers. `config.storage` says how tensors are stored (f32, f16 or
//! int8, see [`crate::weights::quant`]). Large models are written sharded instead:
//! `manifest.json` and shards of bounded size (see [`crate::weights::shards`], loaded shard by
//! shard through [`staged`]); [`load`] reads both layouts.

pub mod staged;

use std::path::Path;

use burn::tensor::Device;

use crate::config::{ModelConfig, Storage};
use crate::error::{Result, VarError};
use crate::files::write_files_atomically;
use crate::model::Model;
use crate::nn::Kernels;
use crate::weights::quant::{StoredAs, store};
use crate::weights::safetensors::{NamedTensor, SafetensorsSource, stored_bytes};
use crate::weights::shards::{MANIFEST_FILE, Manifest, Part, write_part};
use staged::StagedModel;

pub const CONFIG_FILE: &str = "config.json";
pub const VQVAE_FILE: &str = "vqvae.safetensors";
pub const VAR_FILE: &str = "var.safetensors";

/// The shipped model (trained here on Fashion-MNIST), relative to the repository root: what
/// the page loads and what `var generate` and `var eval` use without `--model`.
pub const DEFAULT_MODEL_DIR: &str = "www/models/fashion-mnist";

/// `dir`, or for the default model ([`DEFAULT_MODEL_DIR`], relative to the repository root)
/// the first place that holds it: below the current directory, next to the executable
/// (`models/fashion-mnist/` beside `var`, for a copied binary), or in the source tree the
/// binary was built from. When none does, the error names every place looked at.
pub fn resolve(dir: &Path) -> Result<std::path::PathBuf> {
    if dir != Path::new(DEFAULT_MODEL_DIR) {
        return Ok(dir.to_path_buf());
    }
    let mut candidates = vec![dir.to_path_buf()];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(exe_dir.join("models").join("fashion-mnist"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL_DIR));
    first_model_dir(&candidates)
}

/// The first of `candidates` that holds a `config.json`, or an error naming them all.
fn first_model_dir(candidates: &[std::path::PathBuf]) -> Result<std::path::PathBuf> {
    if let Some(found) = candidates.iter().find(|c| c.join(CONFIG_FILE).is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(VarError::InvalidArgument(format!(
        "the default model (the shipped Fashion-MNIST model) is in none of {}; pass --model DIR",
        looked.join(", ")
    )))
}

/// How a model is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Read the tensors as if they had been written at this storage (see
    /// [`crate::weights::quant::StoredAs`]): compares precisions of one model without
    /// converting files. `None` reads them as stored.
    pub read_as: Option<Storage>,
    /// What the layers are built for: [`Kernels::CpuPacked`] for inference on the CPU
    /// kernels (`var generate`, `inpaint`, `bench`, `eval`, `verify`), [`Kernels::Burn`] for
    /// training, export and conversion.
    pub kernels: Kernels,
}

impl LoadOptions {
    /// Inference on the fastest kernels this device has.
    pub fn inference() -> Self {
        Self {
            kernels: Kernels::CpuPacked,
            ..Self::default()
        }
    }
}

/// How a model directory is written. The storage is the config's (`config.storage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// int8 scales per this many input columns; 0 = one per output channel.
    pub int8_group: usize,
    /// Shards of at most this many bytes, with `manifest.json`; `None` = the two files.
    pub shard_bytes: Option<usize>,
}

/// The three files of an unsharded model directory, as bytes (the browser fetches them).
#[derive(Clone, Copy, Debug)]
pub struct ModelFiles<'a> {
    pub config_json: &'a str,
    pub vqvae: &'a [u8],
    pub var: &'a [u8],
}

/// The most a `config.json` or `manifest.json` may hold (VAR-d36's manifest is under 1 MiB).
const MAX_JSON_BYTES: u64 = 16 << 20;
/// The most one unsharded safetensors file may hold (VAR-d36 at f32 is 9.4 GB).
const MAX_WEIGHTS_BYTES: u64 = 64 << 30;

/// `dir/name` read as a regular file inside `dir`, of at most `max_bytes` (files::inside,
/// files::read_regular).
fn read_file(dir: &Path, name: &str, max_bytes: u64) -> Result<Vec<u8>> {
    crate::files::read_regular(&crate::files::inside(dir, name)?, max_bytes)
}

fn read_text(dir: &Path, name: &str) -> Result<String> {
    String::from_utf8(read_file(dir, name, MAX_JSON_BYTES)?).map_err(|_| VarError::Json {
        path: dir.join(name).display().to_string(),
        message: "not UTF-8 text".into(),
    })
}

/// Loads a model directory written by `var convert`, `var package` or training, sharded or
/// not (one shard in memory at a time). Every file is read as a regular file inside `dir`
/// (links leaving it are refused), and a shard only when its length is the manifest's.
pub fn load(dir: &Path, device: &Device, options: &LoadOptions) -> Result<Model> {
    let _ = crate::files::recover_dir(dir);
    let config = read_text(dir, CONFIG_FILE)?;
    if dir.join(MANIFEST_FILE).exists() {
        let manifest = read_text(dir, MANIFEST_FILE)?;
        let mut staged =
            StagedModel::new(&config, Manifest::from_json(&manifest)?, device, options)?;
        for (i, file) in staged.manifest().shards.clone().iter().enumerate() {
            staged.add_shard(i, &read_file(dir, &file.file, file.bytes)?)?;
        }
        return staged.finish();
    }
    let vqvae = read_file(dir, VQVAE_FILE, MAX_WEIGHTS_BYTES)?;
    let var = read_file(dir, VAR_FILE, MAX_WEIGHTS_BYTES)?;
    let files = ModelFiles {
        config_json: &config,
        vqvae: &vqvae,
        var: &var,
    };
    load_files(&files, device, options)
}

/// Loads a model from the contents of an unsharded directory's three files.
pub fn load_files(files: &ModelFiles, device: &Device, options: &LoadOptions) -> Result<Model> {
    let mut config = ModelConfig::from_json(files.config_json, CONFIG_FILE)?;
    let mut vqvae = SafetensorsSource::new(files.vqvae, VQVAE_FILE)?;
    let mut var = SafetensorsSource::new(files.var, VAR_FILE)?;
    match options.read_as {
        None => Model::from_sources(config, &mut vqvae, &mut var, device, options.kernels),
        Some(storage) => {
            config.storage = storage;
            let mut vqvae = StoredAs::new(vqvae, storage, false);
            let mut var = StoredAs::new(var, storage, true);
            Model::from_sources(config, &mut vqvae, &mut var, device, options.kernels)
        }
    }
}

/// Writes a model directory atomically (see [`write_files_atomically`]) at the precision
/// `config.storage` names, sharded when `options` say so. An existing non-empty `dir` is
/// refused rather than overwritten.
pub fn write(
    dir: &Path,
    config: &ModelConfig,
    vqvae: &[NamedTensor],
    var: &[NamedTensor],
    options: &WriteOptions,
) -> Result<()> {
    refuse_non_empty(dir)?;
    let group = options.int8_group;
    let Some(shard_bytes) = options.shard_bytes else {
        return write_files_atomically(
            dir,
            &[
                (CONFIG_FILE, config.to_json().as_bytes()),
                (
                    VQVAE_FILE,
                    &stored_bytes(&store(vqvae, config.storage, false, group))?,
                ),
                (
                    VAR_FILE,
                    &stored_bytes(&store(var, config.storage, true, group))?,
                ),
            ],
        );
    };
    let mut manifest = Manifest::new(shard_bytes);
    let mut files = write_part(
        &mut manifest,
        Part::Vqvae,
        store(vqvae, config.storage, false, group),
        shard_bytes,
    )?;
    files.extend(write_part(
        &mut manifest,
        Part::Var,
        store(var, config.storage, true, group),
        shard_bytes,
    )?);
    let config_json = config.to_json();
    manifest.seal(&config_json);
    let manifest_json = manifest.to_json();
    let mut all: Vec<(&str, &[u8])> = vec![
        (CONFIG_FILE, config_json.as_bytes()),
        (MANIFEST_FILE, manifest_json.as_bytes()),
    ];
    all.extend(files.iter().map(|(f, b)| (f.as_str(), b.as_slice())));
    write_files_atomically(dir, &all)
}

/// Writes a model's current weights as a model directory (atomically, see [`write`]) in the
/// same format `var convert` produces.
pub fn save(model: &Model, dir: &Path) -> Result<()> {
    use crate::nn::export::export_module;
    write(
        dir,
        &model.config,
        &export_module(&model.vqvae)?,
        &export_module(&model.var)?,
        &WriteOptions::default(),
    )
}

/// Every tensor of a safetensors file of an unsharded directory, as f32 (any storage).
pub fn read_tensors(dir: &Path, file: &str) -> Result<Vec<NamedTensor>> {
    let bytes = read_file(dir, file, MAX_WEIGHTS_BYTES)?;
    let st = SafetensorsSource::new(&bytes, file)?;
    st.names()
        .into_iter()
        .map(|k| {
            let (shape, values) = st.read_any(&k)?;
            Ok((k, shape, values))
        })
        .collect()
}

/// Refuses an existing non-empty `dir`: a model directory is never written over another.
pub fn refuse_non_empty(dir: &Path) -> Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(VarError::InvalidArgument(format!(
            "output directory {} already exists and is not empty; remove it or choose another",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_model_is_found_from_anywhere_or_the_places_are_named() {
        // From the crate root (where tests run) the relative path works; the source tree's
        // absolute path is the fallback that makes it work from any other directory.
        let found = resolve(Path::new(DEFAULT_MODEL_DIR)).unwrap();
        assert!(found.join(CONFIG_FILE).is_file(), "{}", found.display());
        let other = Path::new("somewhere/else");
        assert_eq!(
            resolve(other).unwrap(),
            other,
            "a given directory is used as given"
        );
        let missing = [
            std::path::PathBuf::from("/nonexistent/a"),
            "/nonexistent/b".into(),
        ];
        let err = first_model_dir(&missing).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/a") && err.contains("/nonexistent/b"),
            "{err}"
        );
    }
}
