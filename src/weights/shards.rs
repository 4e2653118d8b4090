//! Sharded model directories, for models too large for one browser buffer.
//!
//! Beside `config.json`, a sharded directory holds `manifest.json` and the tensors of each
//! part (the VQ-VAE, the transformer) split over safetensors files of at most a set size
//! (64 MiB by default): `vqvae-000.safetensors`, `var-000.safetensors`, … Each shard is a
//! complete safetensors file, so a shard is parsed with the same reader as a whole file, and
//! a page can download, check, cache and hand over one shard at a time.
//!
//! The manifest lists every shard (file, part, size, SHA-256), every tensor (shard, dtype,
//! shape, byte offset and length inside the shard file) and the SHA-256 of `config.json`, so
//! that the manifest's own hash (the model's fingerprint) pins every byte of the model and a
//! cached `config.json` of another version is never used with these shards. Reading it is defensive: file
//! names must be plain names, sizes and checksums must match, and every tensor the manifest
//! names must be where it says, with nothing else in the shard.

use std::collections::BTreeMap;

use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::quant::StoredTensor;
use crate::error::{Result, VarError};
use crate::weights::safetensors::{SafetensorsSource, stored_bytes};

pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest's `format` field.
const FORMAT: &str = "var-web-shards";
const VERSION: u32 = 1;
/// The default largest shard: well inside every browser's buffer and binding limits, and a
/// unit small enough to download again when a connection drops.
pub const DEFAULT_SHARD_BYTES: usize = 64 << 20;

/// The two tensor files of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Vqvae,
    Var,
}

impl Part {
    fn stem(self) -> &'static str {
        match self {
            Part::Vqvae => "vqvae",
            Part::Var => "var",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub file: String,
    pub part: Part,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    /// Index into `shards`.
    pub shard: usize,
    /// The safetensors dtype name (`F32`, `F16`, `I8`, …).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Where the tensor's bytes start in the shard file, and how many there are.
    pub offset: u64,
    pub length: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The largest shard the writer aimed for (a single tensor larger than this gets a shard
    /// of its own).
    pub shard_bytes_max: u64,
    pub shards: Vec<ShardEntry>,
    /// Per part, tensor name → where it lives.
    pub tensors: BTreeMap<Part, BTreeMap<String, TensorEntry>>,
    /// Lower-case hex SHA-256 of the model's `config.json`. Absent in manifests written before
    /// 2026-12 (their config is then trusted as read, and the page never takes it from a cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Manifest {
    /// Total bytes of every shard of `part` (all parts when `None`).
    pub fn bytes(&self, part: Option<Part>) -> u64 {
        self.shards
            .iter()
            .filter(|s| part.is_none_or(|p| s.part == p))
            .map(|s| s.bytes)
            .sum()
    }

    /// Parses and checks a manifest: its format and version, plain shard file names, and
    /// tensors that point at existing shards of their own part.
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |m: String| VarError::Config(format!("{MANIFEST_FILE}: {m}"));
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| bad(format!("not a model manifest: {e}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(bad(format!(
                "format '{}' version {} is not one this build reads ({FORMAT} version {VERSION})",
                manifest.format, manifest.version
            )));
        }
        for shard in &manifest.shards {
            let plain = !shard.file.is_empty()
                && !shard.file.starts_with('.')
                && shard
                    .file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !plain {
                return Err(bad(format!(
                    "shard file name '{}' is not a plain file name",
                    shard.file
                )));
            }
            if !is_sha256_hex(&shard.sha256) {
                return Err(bad(format!("shard {} has no valid SHA-256", shard.file)));
            }
        }
        if let Some(sum) = &manifest.config_sha256
            && !is_sha256_hex(sum)
        {
            return Err(bad("config_sha256 is not a SHA-256 in hex".into()));
        }
        for (part, tensors) in &manifest.tensors {
            for (name, t) in tensors {
                match manifest.shards.get(t.shard) {
                    Some(s) if s.part == *part && t.offset.saturating_add(t.length) <= s.bytes => {}
                    _ => {
                        return Err(bad(format!(
                            "tensor '{name}' points outside the {} shards",
                            part.stem()
                        )));
                    }
                }
            }
        }
        Ok(manifest)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest serialises")
    }

    /// Records the checksum of the model's `config.json` (every writer does, last).
    pub fn seal(&mut self, config_json: &str) {
        self.config_sha256 = Some(sha256_hex(config_json.as_bytes()));
    }

    /// Checks `config.json` against the manifest's checksum, when it has one.
    pub fn check_config(&self, config_json: &str) -> Result<()> {
        match &self.config_sha256 {
            Some(sum) if *sum != sha256_hex(config_json.as_bytes()) => Err(VarError::Shard {
                file: "config.json".into(),
                message: "its SHA-256 differs from the manifest's: it belongs to another version of the model".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks one downloaded shard against its entry: size, then checksum.
    pub fn check_shard(&self, index: usize, bytes: &[u8]) -> Result<()> {
        let shard = self.shards.get(index).ok_or_else(|| {
            VarError::InvalidArgument(format!("the manifest has no shard {index}"))
        })?;
        if bytes.len() as u64 != shard.bytes {
            return Err(VarError::Shard {
                file: shard.file.clone(),
                message: format!(
                    "{} bytes, the manifest says {}: the download is incomplete or the file was replaced",
                    bytes.len(),
                    shard.bytes
                ),
            });
        }
        if sha256_hex(bytes) != shard.sha256 {
            return Err(VarError::Shard {
                file: shard.file.clone(),
                message: "its SHA-256 differs from the manifest's: the file is corrupt or belongs to another model".into(),
            });
        }
        Ok(())
    }
}

/// Splits one part's stored tensors into shards of at most `max_bytes` (an int8 weight stays
/// with its `.scales`), serialises them, and records them in `manifest`. Returns the files.
pub fn write_part(
    manifest: &mut Manifest,
    part: Part,
    tensors: Vec<StoredTensor>,
    max_bytes: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    // Units that must share a shard: a tensor and the `.scales` written right after it.
    let mut units: Vec<Vec<StoredTensor>> = Vec::new();
    for t in tensors {
        match units.last_mut() {
            Some(last) if t.name == format!("{}.scales", last[0].name) => last.push(t),
            _ => units.push(vec![t]),
        }
    }
    let mut writer = ShardWriter::new(part, max_bytes);
    let mut files = Vec::new();
    for unit in units {
        files.extend(writer.push(manifest, unit)?);
    }
    files.extend(writer.finish(manifest)?);
    Ok(files)
}

/// Packs one part's tensors into shards as they come, so that a converter holds at most one
/// shard at a time (the browser converts multi-gigabyte checkpoints this way). The packing is
/// greedy in arrival order, so the same tensors in the same order give the same shards
/// whether they arrive one by one or all at once ([`write_part`] is this writer in a loop).
pub struct ShardWriter {
    part: Part,
    max_bytes: usize,
    current: Vec<StoredTensor>,
    /// Bytes of `current` as a file, estimated (see [`ShardWriter::FILE_OVERHEAD`]).
    size: usize,
    /// Shards of this part written so far (the next file's number).
    written: usize,
}

impl ShardWriter {
    // Sizes count the safetensors header too (8 bytes, then JSON of about a name and 100
    // bytes per tensor), so that whole files stay within the bound.
    const FILE_OVERHEAD: usize = 8 + 64;

    pub fn new(part: Part, max_bytes: usize) -> Self {
        Self {
            part,
            max_bytes,
            current: Vec::new(),
            size: Self::FILE_OVERHEAD,
            written: 0,
        }
    }

    /// Adds a unit that must share a shard (a tensor, or an int8 weight and its `.scales`).
    /// When it does not fit beside what is pending, the pending shard is finished first and
    /// returned as `(file name, bytes)`, already recorded in `manifest`.
    pub fn push(
        &mut self,
        manifest: &mut Manifest,
        unit: Vec<StoredTensor>,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let unit_bytes: usize = unit
            .iter()
            .map(|t| t.bytes.len() + t.name.len() + 128)
            .sum();
        let mut finished = None;
        if !self.current.is_empty() && self.size + unit_bytes > self.max_bytes {
            finished = self.flush(manifest)?;
        }
        self.size += unit_bytes;
        self.current.extend(unit);
        Ok(finished)
    }

    /// The last, partly filled shard (if any tensor is pending).
    pub fn finish(mut self, manifest: &mut Manifest) -> Result<Option<(String, Vec<u8>)>> {
        self.flush(manifest)
    }

    fn flush(&mut self, manifest: &mut Manifest) -> Result<Option<(String, Vec<u8>)>> {
        if self.current.is_empty() {
            return Ok(None);
        }
        let group = std::mem::take(&mut self.current);
        self.size = Self::FILE_OVERHEAD;
        let part = self.part;
        let index = manifest.shards.len();
        let file = format!("{}-{:03}.safetensors", part.stem(), self.written);
        self.written += 1;
        let single = group
            .iter()
            .filter(|t| !t.name.ends_with(".scales"))
            .count()
            == 1;
        let bytes = stored_bytes(&group)?;
        drop(group);
        debug_assert!(
            bytes.len() <= self.max_bytes || single,
            "{file}: {}",
            bytes.len()
        );
        let st = SafeTensors::deserialize(&bytes).map_err(|e| VarError::Safetensors {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let table = manifest.tensors.entry(part).or_default();
        for (name, view) in st.tensors() {
            let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
            table.insert(
                name,
                TensorEntry {
                    shard: index,
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().to_vec(),
                    offset: offset as u64,
                    length: view.data().len() as u64,
                },
            );
        }
        manifest.shards.push(ShardEntry {
            file: file.clone(),
            part,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        Ok(Some((file, bytes)))
    }
}

impl Manifest {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            shard_bytes_max: max_bytes as u64,
            shards: Vec::new(),
            tensors: BTreeMap::new(),
            config_sha256: None,
        }
    }
}

impl Manifest {
    /// Checks shard `index` (size, checksum, then exactly the tensors the manifest lists for
    /// it, with their dtypes, shapes and offsets) and opens it for reading.
    pub fn open_shard<'a>(&self, index: usize, bytes: &'a [u8]) -> Result<SafetensorsSource<'a>> {
        self.check_shard(index, bytes)?;
        let shard = &self.shards[index];
        let file = &shard.file;
        let st = SafeTensors::deserialize(bytes).map_err(|e| VarError::Safetensors {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let empty = BTreeMap::new();
        let table = self.tensors.get(&shard.part).unwrap_or(&empty);
        let listed = table.iter().filter(|(_, t)| t.shard == index).count();
        let mismatch = |what: String| VarError::Shard {
            file: file.clone(),
            message: format!("{what}, unlike the manifest"),
        };
        if st.len() != listed {
            return Err(mismatch(format!("holds {} tensors", st.len())));
        }
        for (name, view) in st.tensors() {
            let t = table
                .get(&name)
                .filter(|t| t.shard == index)
                .ok_or_else(|| mismatch(format!("holds tensor '{name}'")))?;
            let offset = (view.data().as_ptr() as usize - bytes.as_ptr() as usize) as u64;
            let same = t.dtype == format!("{:?}", view.dtype())
                && t.shape == view.shape()
                && t.offset == offset
                && t.length == view.data().len() as u64;
            if !same {
                return Err(mismatch(format!(
                    "stores '{name}' as {:?} {:?} at byte {offset}",
                    view.dtype(),
                    view.shape()
                )));
            }
        }
        SafetensorsSource::new(bytes, file)
    }
}

/// What a model will need in device memory, estimated before downloading it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryBudget {
    /// Weights as they sit on the device: int8 matrices stay int8 (with their scales) on a
    /// GPU and are dequantized to f32 on the CPU; f16 tensors are decoded to f32.
    pub weights_bytes: u64,
    /// The KV cache of one image with CFG (2 rows), every scale.
    pub kv_cache_bytes: u64,
    /// The largest live activations: the last scale's attention scores, MLP hidden state and
    /// logits, or the decoder's full-resolution feature maps, whichever is larger, three
    /// buffers deep.
    pub activations_bytes: u64,
}

impl MemoryBudget {
    pub fn total(&self) -> u64 {
        self.weights_bytes + self.kv_cache_bytes + self.activations_bytes
    }
}

/// The bytes a tensor of `file_bytes` stored as `dtype` takes once loaded: int8 stays int8
/// only for the transformer's matrices on a GPU (the VQ-VAE's are dequantized, and the CPU
/// dequantizes everything), f16/bf16 become f32, everything else keeps its size.
pub fn device_bytes(dtype: &str, file_bytes: u64, part: Part, gpu: bool) -> u64 {
    match dtype {
        "I8" if gpu && part == Part::Var => file_bytes,
        "I8" => file_bytes * 4,
        "F16" | "BF16" => file_bytes * 2,
        _ => file_bytes,
    }
}

impl Manifest {
    /// The largest tensor of the model once loaded (see [`device_bytes`]): its
    /// `part/name` and bytes, for the check against a GPU's largest buffer binding.
    pub fn largest_device_tensor(&self, gpu: bool) -> (String, u64) {
        let mut best = (String::new(), 0);
        for (part, tensors) in &self.tensors {
            for (name, t) in tensors {
                let bytes = device_bytes(&t.dtype, t.length, *part, gpu);
                if bytes > best.1 {
                    best = (format!("{}/{name}", part.stem()), bytes);
                }
            }
        }
        best
    }
}

/// [`MemoryBudget`] of a sharded model on a GPU (`gpu`) or the CPU, for one image.
pub fn memory_budget(
    config: &crate::config::ModelConfig,
    manifest: &Manifest,
    gpu: bool,
) -> MemoryBudget {
    let weights_bytes = manifest
        .tensors
        .iter()
        .flat_map(|(part, tensors)| tensors.values().map(move |t| (*part, t)))
        .map(|(part, t)| device_bytes(&t.dtype, t.length, part, gpu))
        .sum();
    let image = ImageMemory::of(config);
    MemoryBudget {
        weights_bytes,
        kv_cache_bytes: image.kv_cache_bytes,
        activations_bytes: image.activations_bytes,
    }
}

/// What each image of a batch adds to device memory (a batch of B holds B times this, beside
/// the weights): the transformer runs 2 rows an image (classifier-free guidance) and the
/// VQ-VAE decodes one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageMemory {
    /// The KV cache of one image's 2 rows, every layer and scale.
    pub kv_cache_bytes: u64,
    /// The largest live activations, three buffers deep (see [`MemoryBudget`]).
    pub activations_bytes: u64,
    /// The largest single buffer one image's share of a batched tensor takes: the last
    /// scale's attention scores, MLP hidden state or logits, one layer's keys, or a
    /// full-resolution decoder feature map. A batch's buffer is B times this, and must fit
    /// the GPU's largest binding.
    pub largest_buffer_bytes: u64,
}

impl ImageMemory {
    pub fn of(config: &crate::config::ModelConfig) -> Self {
        let v = &config.var;
        let (rows, f32_bytes) = (2u64, 4u64);
        let tokens = config.seq_len() as u64;
        let last = config.patch_nums.last().map_or(1, |p| p * p) as u64;
        let c = v.embed_dim as u64;
        let scores = rows * f32_bytes * v.num_heads as u64 * last * tokens;
        let hidden = rows * f32_bytes * last * v.mlp_hidden() as u64;
        let logits = rows * f32_bytes * last * config.vqvae.vocab_size as u64;
        let keys = rows * f32_bytes * tokens * c;
        let side = config.image_size as u64;
        let widest = (config.vqvae.ch * config.vqvae.ch_mult[0]) as u64;
        let decoder = widest * side * side * f32_bytes;
        Self {
            kv_cache_bytes: v.depth as u64 * 2 * keys,
            activations_bytes: 3 * (scores + hidden + logits).max(decoder),
            largest_buffer_bytes: scores.max(hidden).max(logits).max(keys).max(decoder),
        }
    }

    /// The most images, at most `cap`, one batched run can hold: on a GPU, while B times the
    /// largest per-image buffer fits `limit_bytes` (the device's largest storage binding:
    /// WebGPU tells no total); on the CPU, while `weights_bytes` and B images fit
    /// `limit_bytes` of memory (wasm32 addresses 4 GiB). At least 1: a model that loaded
    /// runs one image (its tensors were checked against the same limits at load).
    pub fn largest_batch(
        &self,
        weights_bytes: u64,
        gpu: bool,
        limit_bytes: u64,
        cap: usize,
    ) -> usize {
        let (room, per_image) = if gpu {
            (limit_bytes, self.largest_buffer_bytes)
        } else {
            (
                limit_bytes.saturating_sub(weights_bytes),
                self.kv_cache_bytes + self.activations_bytes,
            )
        };
        let fits = room.checked_div(per_image).unwrap_or(u64::MAX);
        usize::try_from(fits)
            .unwrap_or(usize::MAX)
            .clamp(1, cap.max(1))
    }
}
