//! The frozen VQ-VAE as the transformer trainer's tokenizer: Algorithm 1 run once over the
//! training images ([`TokenSet`]), the token cache `tokens.bin` in the run directory, and the
//! fingerprint of the VQ-VAE's encoder side that says which VQ-VAE a cache (or a transformer
//! run) belongs to.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::{Result, VarError};
use crate::hash::fnv1a;
use crate::modeldir::VQVAE_FILE;
use crate::train::data::ImageSet;
use crate::vqvae::VqVae;
use crate::weights::safetensors::SafetensorsSource;

/// Token maps of a set of images: per image all scales' tokens concatenated in scale order.
pub struct TokenSet {
    pub seq_len: usize,
    pub tokens: Vec<u16>,
    pub labels: Vec<u16>,
}

/// Version 2: labels are 16-bit (image folders may have more than 256 classes). A cache of
/// version 1 is not read, so it is rebuilt.
const TOKENS_MAGIC: &[u8; 8] = b"VARTOK02";
pub(super) const TOKENS_FILE: &str = "tokens.bin";

impl TokenSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Runs Algorithm 1 on the first `count` images of `data`, 100 at a time.
    pub fn encode(
        vae: &VqVae,
        data: &ImageSet,
        count: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let device = vae.quantize.embedding.val().device();
        let count = count.min(data.len());
        let mut tokens = Vec::new();
        let mut seq_len = 0;
        for start in (0..count).step_by(100) {
            let idx: Vec<usize> = (start..(start + 100).min(count)).collect();
            let (per_scale, _) = vae.img_to_tokens(data.batch(&idx, &device));
            let mut maps = Vec::with_capacity(per_scale.len());
            for t in per_scale {
                let [_, n] = t.dims();
                let v = t
                    .into_data()
                    .convert::<i64>()
                    .try_into_vec::<i64>()
                    .map_err(|e| VarError::Device(format!("{e:?}")))?;
                maps.push((n, v));
            }
            seq_len = maps.iter().map(|(n, _)| n).sum();
            for b in 0..idx.len() {
                for (n, v) in &maps {
                    tokens.extend(v[b * n..(b + 1) * n].iter().map(|&t| t as u16));
                }
            }
            progress(start + idx.len(), count);
        }
        Ok(Self {
            seq_len,
            tokens,
            labels: (0..count).map(|i| data.label(i) as u16).collect(),
        })
    }

    fn to_bytes(&self, fingerprint: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + (self.tokens.len() + self.labels.len()) * 2);
        out.extend_from_slice(TOKENS_MAGIC);
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.seq_len as u32).to_le_bytes());
        self.tokens
            .iter()
            .for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
        self.labels
            .iter()
            .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
        out
    }

    /// Reads a token cache; `None` when it belongs to another VQ-VAE or is damaged (it is then
    /// rebuilt, so a bad cache costs time, never correctness).
    fn from_bytes(bytes: &[u8], fingerprint: u64, vocab: usize, classes: usize) -> Option<Self> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        if bytes.get(..8)? != TOKENS_MAGIC
            || u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?) != fingerprint
        {
            return None;
        }
        let (n, l) = (word(16)? as usize, word(20)? as usize);
        let body = bytes.get(24..)?;
        if body.len() != n.checked_mul(l)?.checked_add(n)?.checked_mul(2)? {
            return None;
        }
        let words = |b: &[u8]| -> Vec<u16> {
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        let (tokens, labels) = (words(&body[..n * l * 2]), words(&body[n * l * 2..]));
        if tokens.iter().any(|&t| t as usize >= vocab)
            || labels.iter().any(|&c| c as usize >= classes)
        {
            return None;
        }
        Some(Self {
            seq_len: l,
            tokens,
            labels,
        })
    }

    /// The batch at `idx`: tokens per scale (`[B, pn²]` each), all targets `[B·L]`, labels.
    pub(super) fn batch(
        &self,
        idx: &[usize],
        patch_nums: &[usize],
        device: &Device,
    ) -> (Vec<Tensor<2, Int>>, Tensor<1, Int>, Vec<usize>) {
        let b = idx.len();
        let l = self.seq_len;
        let mut per_scale = Vec::with_capacity(patch_nums.len());
        let mut offset = 0;
        for pn in patch_nums {
            let n = pn * pn;
            let v: Vec<i64> = idx
                .iter()
                .flat_map(|&i| {
                    self.tokens[i * l + offset..i * l + offset + n]
                        .iter()
                        .map(|&t| t as i64)
                })
                .collect();
            per_scale.push(Tensor::from_data(TensorData::new(v, [b, n]), device));
            offset += n;
        }
        let targets: Vec<i64> = idx
            .iter()
            .flat_map(|&i| self.tokens[i * l..(i + 1) * l].iter().map(|&t| t as i64))
            .collect();
        let labels = idx.iter().map(|&i| self.labels[i] as usize).collect();
        (
            per_scale,
            Tensor::from_data(TensorData::new(targets, [b * l]), device),
            labels,
        )
    }
}

/// FNV-1a over the tensors that decide the token maps (encoder, quant_conv, codebook, φ), by
/// name and value. Decoder fine-tuning leaves it unchanged: its tokens, and a transformer
/// trained on them, still fit.
pub fn tokenizer_fingerprint(vqvae_safetensors: &[u8]) -> Result<u64> {
    let src = SafetensorsSource::new(vqvae_safetensors, VQVAE_FILE)?;
    let mut names = src.names();
    names.retain(|n| !n.starts_with("decoder.") && !n.starts_with("post_quant_conv."));
    names.sort();
    let mut bytes = Vec::new();
    for n in names {
        let (shape, values) = src.read_any(&n)?;
        bytes.extend_from_slice(n.as_bytes());
        shape
            .iter()
            .for_each(|d| bytes.extend_from_slice(&(*d as u64).to_le_bytes()));
        values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    }
    Ok(fnv1a(&bytes))
}

/// The frozen VQ-VAE: its config, bytes, fingerprint and module on the plain device.
pub(super) struct FrozenVqvae {
    pub(super) config: ModelConfig,
    pub(super) bytes: Vec<u8>,
    pub(super) fingerprint: u64,
    pub(super) vae: VqVae,
}

pub(super) fn load_frozen(dir: &Path, device: &Device) -> Result<FrozenVqvae> {
    let (config, vae, bytes) = crate::train::vqvae::load_trained(dir, device)?;
    Ok(FrozenVqvae {
        fingerprint: tokenizer_fingerprint(&bytes)?,
        config,
        bytes,
        vae,
    })
}

/// Tokens for `data` under `frozen`, from the cache file when it matches.
pub(super) fn tokens_cached(
    path: &Path,
    frozen: &FrozenVqvae,
    data: &ImageSet,
    count: usize,
    classes: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TokenSet> {
    let vocab = frozen.config.vqvae.vocab_size;
    if let Ok(bytes) = std::fs::read(path)
        && let Some(set) = TokenSet::from_bytes(&bytes, frozen.fingerprint, vocab, classes)
        && set.len() == count.min(data.len())
        && (0..set.len()).all(|i| set.labels[i] as usize == data.label(i))
    {
        return Ok(set);
    }
    let set = TokenSet::encode(&frozen.vae, data, count, progress)?;
    crate::files::write_atomically(path, &set.to_bytes(frozen.fingerprint))?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cache_round_trips_and_rejects_another_vqvae() {
        let set = TokenSet {
            seq_len: 3,
            tokens: vec![1, 2, 3, 4, 5, 6],
            labels: vec![0, 9],
        };
        let bytes = set.to_bytes(42);
        let back = TokenSet::from_bytes(&bytes, 42, 8, 10).unwrap();
        assert_eq!(
            (back.tokens, back.labels, back.seq_len),
            (set.tokens, set.labels, 3)
        );
        assert!(TokenSet::from_bytes(&bytes, 43, 8, 10).is_none());
        assert!(TokenSet::from_bytes(&bytes[..bytes.len() - 1], 42, 8, 10).is_none());
        assert!(
            TokenSet::from_bytes(&bytes, 42, 6, 10).is_none(),
            "token 6 ≥ vocab 6"
        );
        assert!(
            TokenSet::from_bytes(&bytes, 42, 8, 9).is_none(),
            "label 9 ≥ 9 classes"
        );
    }
}
