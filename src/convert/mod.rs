//! Official checkpoints into model directories: the configuration read off the tensor shapes
//! ([`infer_config`]), `var convert` ([`convert_pth`], streamed by [`Conversion`], the code the
//! page runs too) and `var quantize` ([`quantize_dir`]).

use std::path::Path;

use burn::tensor::Device;

use crate::config::{ModelConfig, SamplingParams, Storage, VarConfig, VqvaeConfig, seq_len};
use crate::error::{Result, VarError};
use crate::files::write_dir_atomically;
use crate::model::Model;
use crate::modeldir::{self, CONFIG_FILE, LoadOptions, VAR_FILE, VQVAE_FILE, WriteOptions};
use crate::nn::Kernels;
use crate::weights::pth::source::PthSource;
use crate::weights::pth::{PthError, PthFile};
use crate::weights::shards::MANIFEST_FILE;

mod stream;
pub use stream::{Conversion, Converted, Shard};

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
    // Everything below sizes or divides by what the shapes say: the scales and the base
    // width are checked first, so a hostile shape list gets a sentence, never an overflow.
    crate::config::validate_patch_nums(patch_nums)?;
    let conv_in = need(vae, "encoder.conv_in.weight", 4)?;
    let (ch, in_channels) = (conv_in[0], conv_in[1]);
    if ch == 0 {
        return Err(VarError::Config(
            "encoder.conv_in.weight has no output channels".into(),
        ));
    }
    let z_channels = need(vae, "quant_conv.weight", 4)?[0];
    let vocab_size = need(vae, "quantize.embedding.weight", 2)?[0];
    let count = |f: &dyn Fn(&str) -> Option<Vec<usize>>, pattern: &dyn Fn(usize) -> String| {
        (0..).take_while(|&i| f(&pattern(i)).is_some()).count()
    };
    let levels = count(vae, &|i| format!("encoder.down.{i}.block.0.conv1.weight"));
    if levels > crate::config::limits::MAX_LEVELS {
        return Err(VarError::Config(format!(
            "the VQ-VAE has {levels} encoder levels, more than this reader accepts ({})",
            crate::config::limits::MAX_LEVELS
        )));
    }
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
    let mut config = ModelConfig {
        name: name.to_string(),
        // At most 256 (MAX_PATCH) times 128 (MAX_LEVELS): no overflow.
        image_size: patch_nums.last().copied().unwrap_or(0) << (levels - 1),
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
        // Named below, once the sizes are known to be valid: a name per class is the one
        // allocation here that grows with a number read off a shape.
        class_names: Vec::new(),
        sampling: SamplingParams::default(),
        storage: Storage::F32,
        fit: None,
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
    config.vqvae.validate()?;
    config.var.validate()?;
    config.class_names = crate::config::default_class_names(config.var.num_classes);
    config.validate()?;
    Ok(config)
}

/// Builds a model straight from official checkpoints, its layers for `kernels`: the
/// configuration is read off the shapes (see [`infer_config`]) and every tensor is checked on
/// the way in.
pub fn model_from_pth(
    vae: &PthFile,
    var: &PthFile,
    patch_nums: &[usize],
    name: &str,
    device: &Device,
    kernels: Kernels,
) -> Result<Model> {
    let vae_shapes = |k: &str| vae.get(k).map(|t| t.shape.clone());
    let var_shapes = |k: &str| var.get(k).map(|t| t.shape.clone());
    let config = infer_config(&vae_shapes, &var_shapes, patch_nums, name)?;
    Model::from_sources(
        config,
        &mut PthSource::new(vae),
        &mut PthSource::new(var),
        device,
        kernels,
    )
}

/// What `var convert` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// The storage of the model directory (int8 per output channel).
    pub storage: Storage,
    /// Shards of at most this many bytes, with `manifest.json`; `None` = the two files.
    pub shard_bytes: Option<usize>,
}

/// `var convert`: reads official `.pth` files (never executing their pickles), infers and
/// checks the configuration, builds the model once on the CPU to prove every tensor fits,
/// then converts it tensor by tensor with [`Conversion`] (the code the page runs) into the
/// model directory `options` describe. The directory appears whole or not at all.
pub fn convert_pth(
    vae_path: &Path,
    var_path: &Path,
    patch_nums: &[usize],
    out: &Path,
    options: &ConvertOptions,
    mut progress: impl FnMut(&str),
) -> Result<Converted> {
    modeldir::refuse_non_empty(out)?;
    progress("reading checkpoints");
    let vae = PthFile::open(vae_path).map_err(|e| annotate(vae_path, e))?;
    let var = PthFile::open(var_path).map_err(|e| annotate(var_path, e))?;
    let name = out
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    progress("checking every tensor against the model");
    drop(model_from_pth(
        &vae,
        &var,
        patch_nums,
        &name,
        &Device::flex(),
        Kernels::Burn,
    )?);

    // Unsharded is one shard per part, renamed to the two files (the same bytes).
    let shard_bytes = options.shard_bytes.unwrap_or(usize::MAX);
    let (vae_name, var_name) = (
        vae_path.display().to_string(),
        var_path.display().to_string(),
    );
    let mut conversion = Conversion::new(
        (vae, &vae_name),
        (var, &var_name),
        patch_nums,
        &name,
        options.storage,
        Some(shard_bytes),
    )?;
    let mut converted = None;
    write_dir_atomically(out, |tmp| {
        let write = |file: &str, bytes: &[u8]| {
            let path = tmp.join(file);
            std::fs::write(&path, bytes).map_err(|e| VarError::io(&path, e))
        };
        while !conversion.is_done() {
            for shard in conversion.step()? {
                write(&shard.file, &shard.bytes)?;
            }
            let (done, total) = conversion.tensors();
            progress(&format!("converting tensor {done} of {total}"));
        }
        let done = conversion.finish()?;
        write(CONFIG_FILE, done.config_json.as_bytes())?;
        if options.shard_bytes.is_some() {
            write(MANIFEST_FILE, done.manifest_json.as_bytes())?;
        } else {
            for (shard, file) in [
                ("vqvae-000.safetensors", VQVAE_FILE),
                ("var-000.safetensors", VAR_FILE),
            ] {
                let (from, to) = (tmp.join(shard), tmp.join(file));
                std::fs::rename(&from, &to).map_err(|e| VarError::io(&to, e))?;
            }
        }
        converted = Some(done);
        Ok(())
    })?;
    Ok(converted.expect("a successful write converted the model"))
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
    let vqvae = modeldir::read_tensors(input, VQVAE_FILE)?;
    let var = modeldir::read_tensors(input, VAR_FILE)?;
    config.storage = storage;
    let write_options = WriteOptions {
        int8_group: group,
        shard_bytes: None,
    };
    modeldir::write(out, &config, &vqvae, &var, &write_options)?;
    modeldir::load(out, &Device::flex(), &LoadOptions::default())?;
    Ok(config)
}

fn annotate(path: &Path, e: PthError) -> VarError {
    VarError::Checkpoint {
        path: path.display().to_string(),
        source: Box::new(e),
    }
}
