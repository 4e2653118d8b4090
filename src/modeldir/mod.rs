//! Our model directory and the official checkpoint import.
//!
//! A model directory holds `config.json` ([`ModelConfig`]), `vqvae.safetensors` and
//! `var.safetensors`. Tensors keep the reference implementation's key names and layouts, so the
//! one key table is the modules' `load` functions and a converted official checkpoint is
//! byte-for-byte the same numbers. `config.storage` says how tensors are stored (f32, f16 or
//! int8, see [`super::quant`]). Large models are written sharded instead: `manifest.json` and
//! shards of bounded size (see [`super::shards`]); every loader here reads both layouts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::pth::PthFile;
use super::quant::{StoredAs, StoredTensor, store};
use super::shards::{MANIFEST_FILE, Manifest, Part, write_part};
use super::staged::StagedModel;
use super::{TensorSource, check_shape, is_recomputed_buffer};
use crate::config::{ModelConfig, SamplingDefaults, Storage, VarConfig, VqvaeConfig, seq_len};
use crate::error::{Result, VarError};
use crate::model::Model;

pub const CONFIG_FILE: &str = "config.json";
pub const VQVAE_FILE: &str = "vqvae.safetensors";
pub const VAR_FILE: &str = "var.safetensors";

/// Tensors from a safetensors buffer, in any precision [`super::quant`] writes, read as f32.
pub struct SafetensorsSource<'a> {
    name: String,
    st: SafeTensors<'a>,
    used: BTreeSet<String>,
}

impl<'a> SafetensorsSource<'a> {
    pub fn new(bytes: &'a [u8], name: &str) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| VarError::Safetensors {
            file: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_string(),
            st,
            used: BTreeSet::new(),
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.st.names().into_iter().map(|s| s.to_string()).collect()
    }

    /// Any tensor as f32 (every stored precision decoded, i64 converted), with its shape.
    pub fn read_any(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let view = self.st.tensor(key).map_err(|_| VarError::MissingTensor {
            key: key.to_string(),
            shape: vec![],
        })?;
        let shape = view.shape().to_vec();
        if view.dtype() == Dtype::I64 {
            let values = view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32)
                .collect();
            return Ok((shape, values));
        }
        Ok((shape, self.decode(key, &view)?))
    }

    /// Decodes a stored tensor to f32, with its `.scales` when it is int8.
    fn decode(&self, key: &str, view: &TensorView) -> Result<Vec<f32>> {
        let scales = if view.dtype() == Dtype::I8 {
            let scales_key = format!("{key}.scales");
            let s = self.st.tensor(&scales_key).ok();
            match s {
                Some(s) if s.dtype() == Dtype::F32 => Some((
                    s.shape().to_vec(),
                    super::quant::decode(&scales_key, Dtype::F32, s.shape(), s.data(), None)?,
                )),
                _ => None,
            }
        } else {
            None
        };
        super::quant::decode(
            key,
            view.dtype(),
            view.shape(),
            view.data(),
            scales
                .as_ref()
                .map(|(shape, v)| (shape.as_slice(), v.clone())),
        )
        .map_err(|e| VarError::Safetensors {
            file: self.name.clone(),
            message: e.to_string(),
        })
    }
}

impl TensorSource for SafetensorsSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.st.tensor(key).map_err(|_| VarError::MissingTensor {
            key: key.to_string(),
            shape: shape.to_vec(),
        })?;
        check_shape(key, shape, view.shape())?;
        let values = self.decode(key, &view)?;
        self.used.insert(key.to_string());
        if view.dtype() == Dtype::I8 {
            self.used.insert(format!("{key}.scales"));
        }
        Ok(values)
    }

    fn unused(&self) -> Vec<String> {
        self.st
            .names()
            .into_iter()
            .filter(|k| !self.used.contains(*k) && !is_recomputed_buffer(k))
            .map(|k| k.to_string())
            .collect()
    }

    fn take_int8(&mut self, key: &str, shape: &[usize]) -> Result<Option<(Vec<i8>, Vec<f32>)>> {
        let Ok(view) = self.st.tensor(key) else {
            return Ok(None);
        };
        let scales_key = format!("{key}.scales");
        let per_row = self
            .st
            .tensor(&scales_key)
            .ok()
            .filter(|s| s.dtype() == Dtype::F32 && s.shape() == [shape[0], 1]);
        let (Some(scales), Dtype::I8) = (per_row, view.dtype()) else {
            return Ok(None); // f32, f16 or grouped int8: `take` dequantizes
        };
        check_shape(key, shape, view.shape())?;
        let values =
            super::quant::decode(&scales_key, Dtype::F32, scales.shape(), scales.data(), None)?;
        if values.iter().any(|s| !s.is_finite()) {
            return Err(VarError::Safetensors {
                file: self.name.clone(),
                message: format!("tensor '{scales_key}' has scales that are not finite"),
            });
        }
        self.used.insert(key.to_string());
        self.used.insert(scales_key);
        Ok(Some((
            view.data().iter().map(|&b| b as i8).collect(),
            values,
        )))
    }
}

/// Tensors straight from an official `.pth` checkpoint.
pub struct PthSource<'a> {
    file: &'a PthFile,
    used: BTreeSet<String>,
}

impl<'a> PthSource<'a> {
    pub fn new(file: &'a PthFile) -> Self {
        Self {
            file,
            used: BTreeSet::new(),
        }
    }
}

impl TensorSource for PthSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.file.get(key).ok_or_else(|| VarError::MissingTensor {
            key: key.to_string(),
            shape: shape.to_vec(),
        })?;
        check_shape(key, shape, &t.shape)?;
        self.used.insert(key.to_string());
        Ok(self.file.read_f32(key)?)
    }

    fn unused(&self) -> Vec<String> {
        self.file
            .keys()
            .filter(|k| !self.used.contains(*k) && !is_recomputed_buffer(k))
            .map(|k| k.to_string())
            .collect()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| VarError::io(path, e))
}

/// Loads a model from the three files' contents (the browser fetches them; the CLI reads them).
pub fn load_model_bytes(
    config_json: &str,
    vqvae: &[u8],
    var: &[u8],
    device: &Device,
) -> Result<Model> {
    let config = ModelConfig::from_json(config_json, CONFIG_FILE)?;
    let mut vq = SafetensorsSource::new(vqvae, VQVAE_FILE)?;
    let mut tr = SafetensorsSource::new(var, VAR_FILE)?;
    Model::from_sources(config, &mut vq, &mut tr, device)
}

/// Loads a model directory written by `var convert` or by training, sharded or not.
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<Model> {
    let config_path = dir.join(CONFIG_FILE);
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| VarError::io(&config_path, e))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    if manifest_path.exists() {
        let manifest =
            std::fs::read_to_string(&manifest_path).map_err(|e| VarError::io(&manifest_path, e))?;
        let mut staged = StagedModel::new(&config, Manifest::from_json(&manifest)?, device)?;
        // One shard in memory at a time.
        for (i, file) in staged.manifest().shards.clone().iter().enumerate() {
            staged.add_shard(i, &read_file(&dir.join(&file.file))?)?;
        }
        return staged.finish();
    }
    let vq = read_file(&dir.join(VQVAE_FILE))?;
    let tr = read_file(&dir.join(VAR_FILE))?;
    load_model_bytes(&config, &vq, &tr, device)
}

/// Loads a model directory as if it had been written at `storage` (see
/// [`super::quant::StoredAs`]): compares precisions of one model without converting files.
pub fn load_model_dir_as(dir: &Path, storage: Storage, device: &Device) -> Result<Model> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| VarError::io(&config_path, e))?;
    let (vq, tr) = (
        read_file(&dir.join(VQVAE_FILE))?,
        read_file(&dir.join(VAR_FILE))?,
    );
    load_model_bytes_as(&text, &vq, &tr, storage, device)
}

/// [`load_model_bytes`], read as if the files had been written at `storage`.
pub fn load_model_bytes_as(
    config_json: &str,
    vqvae: &[u8],
    var: &[u8],
    storage: Storage,
    device: &Device,
) -> Result<Model> {
    let mut config = ModelConfig::from_json(config_json, CONFIG_FILE)?;
    config.storage = storage;
    let mut vq = StoredAs::new(SafetensorsSource::new(vqvae, VQVAE_FILE)?, storage, false);
    let mut tr = StoredAs::new(SafetensorsSource::new(var, VAR_FILE)?, storage, true);
    Model::from_sources(config, &mut vq, &mut tr, device)
}

/// A tensor to be written: name, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Serialises f32 tensors in safetensors format.
pub fn safetensors_bytes(tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    stored_bytes(&store(tensors, Storage::F32, false, 0))
}

/// Serialises tensors of any stored precision in safetensors format.
pub fn stored_bytes(tensors: &[StoredTensor]) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|t| TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|v| (t.name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VarError::Safetensors {
            file: "output".into(),
            message: e.to_string(),
        })?;
    safetensors::serialize(views, None).map_err(|e| VarError::Safetensors {
        file: "output".into(),
        message: e.to_string(),
    })
}

/// Writes a model directory atomically (see [`write_files_atomically`]) at the precision
/// `config.storage` names (int8 per output channel). An existing non-empty `dir` is refused
/// rather than overwritten.
pub fn write_model_dir(
    dir: &Path,
    config: &ModelConfig,
    vqvae: &[NamedTensor],
    var: &[NamedTensor],
) -> Result<()> {
    write_model_dir_grouped(dir, config, vqvae, var, 0)
}

/// [`write_model_dir`] with int8 scales per `group` input columns (0 = per output channel).
pub fn write_model_dir_grouped(
    dir: &Path,
    config: &ModelConfig,
    vqvae: &[NamedTensor],
    var: &[NamedTensor],
    group: usize,
) -> Result<()> {
    refuse_non_empty(dir)?;
    write_files_atomically(
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
    )
}

/// [`write_model_dir`] in shards of at most `shard_bytes` each, with `manifest.json`.
pub fn write_model_dir_sharded(
    dir: &Path,
    config: &ModelConfig,
    vqvae: &[NamedTensor],
    var: &[NamedTensor],
    shard_bytes: usize,
) -> Result<()> {
    refuse_non_empty(dir)?;
    let mut manifest = Manifest::new(shard_bytes);
    let mut files = write_part(
        &mut manifest,
        Part::Vqvae,
        store(vqvae, config.storage, false, 0),
        shard_bytes,
    )?;
    files.extend(write_part(
        &mut manifest,
        Part::Var,
        store(var, config.storage, true, 0),
        shard_bytes,
    )?);
    let (config_json, manifest_json) = (config.to_json(), manifest.to_json());
    let mut all: Vec<(&str, &[u8])> = vec![
        (CONFIG_FILE, config_json.as_bytes()),
        (MANIFEST_FILE, manifest_json.as_bytes()),
    ];
    all.extend(files.iter().map(|(f, b)| (f.as_str(), b.as_slice())));
    write_files_atomically(dir, &all)
}

fn refuse_non_empty(dir: &Path) -> Result<()> {
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

/// Makes `dir` hold exactly `files`, all or nothing: everything is written to a hidden sibling
/// directory first, which then takes the place of `dir` (a previous `dir` is moved aside and
/// removed only after the swap). A failure leaves `dir` as it was.
pub fn write_files_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| VarError::io(parent, e))?;
    let leaf = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = parent.join(format!(".{leaf}.partial-{}", std::process::id()));
    let old: PathBuf = parent.join(format!(".{leaf}.old-{}", std::process::id()));
    let result = (|| {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| VarError::io(&tmp, e))?;
        for (name, bytes) in files {
            let p = tmp.join(name);
            std::fs::write(&p, bytes).map_err(|e| VarError::io(&p, e))?;
        }
        let had_old = dir.exists();
        if had_old {
            std::fs::rename(dir, &old).map_err(|e| VarError::io(dir, e))?;
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            if had_old {
                let _ = std::fs::rename(&old, dir); // put the previous contents back
            }
            return Err(VarError::io(dir, e));
        }
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Reads the configuration off the tensor shapes of an official VQ-VAE and VAR checkpoint
/// (`shape(key)` answers `None` for a missing key). Only `patch_nums` cannot be read off the
/// weights; it is checked against `pos_1LC` and `lvl_embed`.
pub fn infer_config(
    vae: &dyn Fn(&str) -> Option<Vec<usize>>,
    var: &dyn Fn(&str) -> Option<Vec<usize>>,
    patch_nums: &[usize],
    name: &str,
) -> Result<ModelConfig> {
    let need = |f: &dyn Fn(&str) -> Option<Vec<usize>>, key: &str, rank: usize| {
        f(key)
            .filter(|s| s.len() == rank)
            .ok_or_else(|| VarError::MissingTensor {
                key: key.to_string(),
                shape: vec![],
            })
    };
    let conv_in = need(vae, "encoder.conv_in.weight", 4)?;
    let (ch, in_channels) = (conv_in[0], conv_in[1]);
    let z_channels = need(vae, "quant_conv.weight", 4)?[0];
    let vocab_size = need(vae, "quantize.embedding.weight", 2)?[0];
    let count = |f: &dyn Fn(&str) -> Option<Vec<usize>>, pattern: &dyn Fn(usize) -> String| {
        (0..).take_while(|&i| f(&pattern(i)).is_some()).count()
    };
    let levels = count(vae, &|i| format!("encoder.down.{i}.block.0.conv1.weight"));
    if levels == 0 {
        return Err(VarError::MissingTensor {
            key: "encoder.down.0.block.0.conv1.weight".into(),
            shape: vec![],
        });
    }
    let ch_mult = (0..levels)
        .map(|i| Ok(need(vae, &format!("encoder.down.{i}.block.0.conv1.weight"), 4)?[0] / ch))
        .collect::<Result<Vec<_>>>()?;
    let last = levels - 1;
    let num_res_blocks = count(vae, &|j| format!("encoder.down.0.block.{j}.conv1.weight"));
    let decoder_blocks = count(vae, &|j| format!("decoder.up.0.block.{j}.conv1.weight"));
    let vqvae = VqvaeConfig {
        vocab_size,
        z_channels,
        ch,
        ch_mult,
        num_res_blocks,
        decoder_res_blocks: (decoder_blocks != num_res_blocks + 1).then_some(decoder_blocks),
        attn_in_last_level: vae(&format!("encoder.down.{last}.attn.0.qkv.weight")).is_some(),
        attn_in_mid: vae("encoder.mid.attn_1.qkv.weight").is_some(),
        in_channels,
        // Not stored in the weights; every released VQ-VAE uses 0.5.
        quant_resi: 0.5,
        share_quant_resi: count(vae, &|i| format!("quantize.quant_resi.qresi_ls.{i}.weight")),
    };

    let class_emb = need(var, "class_emb.weight", 2)?;
    let embed_dim = class_emb[1];
    let num_classes = class_emb[0].saturating_sub(1);
    let depth = count(var, &|i| format!("blocks.{i}.ffn.fc1.weight"));
    let fc1 = need(var, "blocks.0.ffn.fc1.weight", 2)?;
    let heads_key = "blocks.0.attn.scale_mul_1H11";
    let attn_l2_norm = var(heads_key).is_some();
    let num_heads = match var(heads_key) {
        Some(s) if s.len() == 4 => s[1],
        // Without l2-norm attention the head count is not in the weights; the reference's
        // width-64 heads are assumed.
        _ => (embed_dim / 64).max(1),
    };
    let config = ModelConfig {
        name: name.to_string(),
        image_size: patch_nums.last().copied().unwrap_or(0) * (1 << (levels - 1)),
        patch_nums: patch_nums.to_vec(),
        var: VarConfig {
            depth,
            embed_dim,
            num_heads,
            num_classes,
            mlp_ratio: fc1[0] as f32 / embed_dim as f32,
            attn_l2_norm,
            shared_aln: var("shared_ada_lin.1.weight").is_some(),
        },
        vqvae,
        class_names: crate::config::default_class_names(num_classes),
        sampling: SamplingDefaults::default(),
        storage: Storage::F32,
    };

    // Cross-checks the shapes alone cannot make consistent.
    let pos = need(var, "pos_1LC", 3)?;
    let l = seq_len(patch_nums);
    if pos[1] != l {
        return Err(VarError::Config(format!(
            "patch_nums {patch_nums:?} give L = {l} tokens but pos_1LC holds {}; pass the scales this model was trained with (--patch-nums)",
            pos[1]
        )));
    }
    let lvl = need(var, "lvl_embed.weight", 2)?;
    if lvl[0] != patch_nums.len() {
        return Err(VarError::Config(format!(
            "patch_nums has {} scales but lvl_embed has {} rows",
            patch_nums.len(),
            lvl[0]
        )));
    }
    let head = need(var, "head.weight", 2)?;
    if head[0] != vocab_size {
        return Err(VarError::Config(format!(
            "the transformer predicts {} codes but the VQ-VAE codebook has {vocab_size}: these files do not belong together",
            head[0]
        )));
    }
    let word = need(var, "word_embed.weight", 2)?;
    if word[1] != z_channels {
        return Err(VarError::Config(format!(
            "the transformer reads {}-channel codes but the VQ-VAE has {z_channels}: these files do not belong together",
            word[1]
        )));
    }
    config.validate()?;
    Ok(config)
}

/// Builds a model straight from official checkpoints: the configuration is read off the
/// shapes (see [`infer_config`]) and every tensor is checked on the way in.
pub fn model_from_pth(
    vae: &PthFile,
    var: &PthFile,
    patch_nums: &[usize],
    name: &str,
    device: &Device,
) -> Result<Model> {
    let vae_shapes = |k: &str| vae.get(k).map(|t| t.shape.clone());
    let var_shapes = |k: &str| var.get(k).map(|t| t.shape.clone());
    let config = infer_config(&vae_shapes, &var_shapes, patch_nums, name)?;
    Model::from_sources(
        config,
        &mut PthSource::new(vae),
        &mut PthSource::new(var),
        device,
    )
}

/// `var convert`: reads official `.pth` files (never executing their pickles), infers and
/// checks the configuration, builds the model once on the CPU to prove every tensor fits,
/// and writes our model directory in f32.
pub fn convert_pth(
    vae_path: &Path,
    var_path: &Path,
    patch_nums: &[usize],
    out: &Path,
    progress: impl FnMut(&str),
) -> Result<ModelConfig> {
    convert_pth_at(
        vae_path,
        var_path,
        patch_nums,
        Storage::F32,
        None,
        out,
        progress,
    )
}

/// [`convert_pth`] writing at `storage` (int8 per output channel), in shards of at most
/// `shard_bytes` when given.
pub fn convert_pth_at(
    vae_path: &Path,
    var_path: &Path,
    patch_nums: &[usize],
    storage: Storage,
    shard_bytes: Option<usize>,
    out: &Path,
    mut progress: impl FnMut(&str),
) -> Result<ModelConfig> {
    progress("reading checkpoints");
    let vae = PthFile::open(vae_path).map_err(|e| annotate(vae_path, e))?;
    let var = PthFile::open(var_path).map_err(|e| annotate(var_path, e))?;
    let name = out
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    progress("checking every tensor against the model");
    let mut config = model_from_pth(&vae, &var, patch_nums, &name, &Device::flex())?.config;
    config.storage = storage;

    progress("writing the model directory");
    let collect = |f: &PthFile| -> Result<Vec<NamedTensor>> {
        f.keys()
            .filter(|k| !is_recomputed_buffer(k))
            .map(|k| {
                let shape = f.get(k).map(|t| t.shape.clone()).unwrap_or_default();
                Ok((k.to_string(), shape, f.read_f32(k)?))
            })
            .collect()
    };
    let (vae, var) = (collect(&vae)?, collect(&var)?);
    match shard_bytes {
        Some(max) => write_model_dir_sharded(out, &config, &vae, &var, max)?,
        None => write_model_dir(out, &config, &vae, &var)?,
    }
    Ok(config)
}

/// `var quantize`: rewrites an f32 model directory at another precision (int8 groups of
/// `group` input columns, 0 = per output channel), then loads the result to prove it.
pub fn quantize_dir(
    input: &Path,
    storage: Storage,
    group: usize,
    out: &Path,
) -> Result<ModelConfig> {
    let config_path = input.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| VarError::io(&config_path, e))?;
    let mut config = ModelConfig::from_json(&text, CONFIG_FILE)?;
    if config.storage != Storage::F32 {
        return Err(VarError::InvalidArgument(format!(
            "{} is already stored as {:?}; quantize from the f32 model",
            input.display(),
            config.storage
        )));
    }
    let read = |file: &str| -> Result<Vec<NamedTensor>> {
        let bytes = read_file(&input.join(file))?;
        let st = SafetensorsSource::new(&bytes, file)?;
        st.names()
            .into_iter()
            .map(|k| {
                let (shape, values) = st.read_any(&k)?;
                Ok((k, shape, values))
            })
            .collect()
    };
    let (vq, tr) = (read(VQVAE_FILE)?, read(VAR_FILE)?);
    config.storage = storage;
    write_model_dir_grouped(out, &config, &vq, &tr, group)?;
    load_model_dir(out, &Device::flex())?;
    Ok(config)
}

fn annotate(path: &Path, e: super::pth::PthError) -> VarError {
    VarError::Checkpoint {
        path: path.display().to_string(),
        source: e,
    }
}

/// Writes a model's current weights as a model directory (atomically, see
/// [`write_model_dir`]) in the same format `var convert` produces.
pub fn save_model_dir(model: &Model, dir: &Path) -> Result<()> {
    use super::export::export_module;
    write_model_dir(
        dir,
        &model.config,
        &export_module(&model.vqvae),
        &export_module(&model.var),
    )
}
