//! Reduced-precision storage of a model directory: f16, and int8 weight-only quantization.
//!
//! int8 is symmetric, per output row in groups of `group` input columns: each group of a
//! `[out, in]` weight gets one f32 scale `max|w| / 127`, stored as `{key}.scales` with shape
//! `[out, in / group]` (a single column when `group = in`: per output channel). Every 2-D
//! `*.weight` of the transformer is quantized (qkv, proj, fc1, fc2, ada_lin, head, and the
//! class and level embeddings, whose rows play the part of output channels); everything else,
//! and the whole VQ-VAE, is stored as f16. Reading dequantizes into the one model
//! implementation, so there is no second model definition per precision.

use half::f16;
use safetensors::tensor::Dtype;

use super::TensorSource;
use crate::config::Storage;
use crate::error::{Result, VarError};
use crate::weights::safetensors::NamedTensor;

/// A tensor as it is written: name, dtype, shape, little-endian bytes.
pub struct StoredTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl StoredTensor {
    fn f32(name: String, shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        Self {
            name,
            dtype: Dtype::F32,
            shape,
            bytes,
        }
    }

    fn f16(name: String, shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = values
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect();
        Self {
            name,
            dtype: Dtype::F16,
            shape,
            bytes,
        }
    }
}

/// Symmetric int8 quantization of a row-major `[rows, cols]` matrix in groups of `group`
/// columns: the codes and one scale per (row, group).
pub fn quantize_int8(values: &[f32], cols: usize, group: usize) -> (Vec<i8>, Vec<f32>) {
    debug_assert!(cols.is_multiple_of(group) && values.len().is_multiple_of(cols));
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / group);
    for chunk in values.chunks_exact(group) {
        let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        codes.extend(
            chunk
                .iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (codes, scales)
}

/// The inverse of [`quantize_int8`]: `codes[i] * scale[group of i]`.
pub fn dequantize_int8(codes: &[i8], scales: &[f32], group: usize) -> Vec<f32> {
    codes
        .chunks_exact(group)
        .zip(scales)
        .flat_map(|(c, &s)| c.iter().map(move |&q| q as f32 * s))
        .collect()
}

/// The int8 group for a `[out, in]` weight: `group`, or the whole row when `group` is 0 or
/// does not divide the row.
fn group_for(cols: usize, group: usize) -> usize {
    if group == 0 || !cols.is_multiple_of(group) {
        cols
    } else {
        group
    }
}

/// Which tensors of which file become int8: 2-D weights of the transformer.
fn is_int8_candidate(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with(".weight")
}

/// The tensors of one model file at `storage`. `transformer` selects the file whose weights
/// may become int8 (the VQ-VAE is f16 under int8 storage); `group` is the int8 group size
/// (0 = per output channel).
pub fn store(
    tensors: &[NamedTensor],
    storage: Storage,
    transformer: bool,
    group: usize,
) -> Vec<StoredTensor> {
    let mut out = Vec::with_capacity(tensors.len());
    for (name, shape, values) in tensors {
        match storage {
            Storage::F32 => out.push(StoredTensor::f32(name.clone(), shape.clone(), values)),
            Storage::F16 => out.push(StoredTensor::f16(name.clone(), shape.clone(), values)),
            Storage::Int8 if transformer && is_int8_candidate(name, shape) => {
                let cols = shape[1];
                let g = group_for(cols, group);
                let (codes, scales) = quantize_int8(values, cols, g);
                out.push(StoredTensor {
                    name: name.clone(),
                    dtype: Dtype::I8,
                    shape: shape.clone(),
                    bytes: codes.iter().map(|&c| c as u8).collect(),
                });
                out.push(StoredTensor::f32(
                    format!("{name}.scales"),
                    vec![shape[0], cols / g],
                    &scales,
                ));
            }
            Storage::Int8 => out.push(StoredTensor::f16(name.clone(), shape.clone(), values)),
        }
    }
    out
}

/// Decodes one stored tensor to f32. `scales` is the `{key}.scales` tensor of an int8 one
/// (its shape and values).
pub fn decode(
    key: &str,
    dtype: Dtype,
    shape: &[usize],
    bytes: &[u8],
    scales: Option<(&[usize], Vec<f32>)>,
) -> Result<Vec<f32>> {
    let bad = |m: String| VarError::InvalidArgument(format!("tensor '{key}': {m}"));
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::I8 => {
            let (sshape, svalues) =
                scales.ok_or_else(|| bad("is int8 but has no '.scales' tensor".into()))?;
            let (rows, cols) = match shape {
                [r, c] => (*r, *c),
                _ => return Err(bad(format!("int8 tensors must be 2-D, not {shape:?}"))),
            };
            let groups = match sshape {
                [r, g] if *r == rows && *g > 0 && cols.is_multiple_of(*g) => *g,
                _ => {
                    return Err(bad(format!(
                        "its scales have shape {sshape:?}; [{rows}, G] with G dividing {cols} is needed"
                    )));
                }
            };
            if svalues.iter().any(|s| !s.is_finite()) {
                return Err(bad("its scales are not all finite".into()));
            }
            let codes: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
            dequantize_int8(&codes, &svalues, cols / groups)
        }
        other => {
            return Err(bad(format!(
                "dtype {other:?} is not a weight format we read"
            )));
        }
    })
}

/// Any source, read back as if it had been written at `storage` (per-channel int8): f16
/// rounding, and int8 codes with per-row scales for the transformer's matrices, which
/// [`TensorSource::take_int8`] hands out as they are. Benchmarks build int8 models at
/// official shapes from random weights this way, in memory, without writing a file.
pub struct StoredAs<S> {
    inner: S,
    storage: Storage,
    transformer: bool,
}

impl<S: TensorSource> StoredAs<S> {
    /// `transformer` selects the rules of the transformer's file (the VQ-VAE's file has no
    /// int8 tensors), as in [`store`].
    pub fn new(inner: S, storage: Storage, transformer: bool) -> Self {
        Self {
            inner,
            storage,
            transformer,
        }
    }

    fn quantized(&self, key: &str, shape: &[usize]) -> bool {
        self.storage == Storage::Int8 && self.transformer && is_int8_candidate(key, shape)
    }
}

impl<S: TensorSource> TensorSource for StoredAs<S> {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let values = self.inner.take(key, shape)?;
        Ok(match self.storage {
            Storage::F32 => values,
            _ if self.quantized(key, shape) => {
                let (codes, scales) = quantize_int8(&values, shape[1], shape[1]);
                dequantize_int8(&codes, &scales, shape[1])
            }
            _ => values
                .into_iter()
                .map(|x| f16::from_f32(x).to_f32())
                .collect(),
        })
    }

    fn unused(&self) -> Vec<String> {
        self.inner.unused()
    }

    fn take_int8(&mut self, key: &str, shape: &[usize]) -> Result<Option<(Vec<i8>, Vec<f32>)>> {
        if !self.quantized(key, shape) {
            return Ok(None);
        }
        let values = self.inner.take(key, shape)?;
        Ok(Some(quantize_int8(&values, shape[1], shape[1])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_round_trip_error_is_at_most_half_a_step() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.013)
            .collect();
        for group in [16, 64] {
            let (codes, scales) = quantize_int8(&values, 64, group);
            assert_eq!(scales.len(), 64 / group);
            let back = dequantize_int8(&codes, &scales, group);
            for (i, (a, b)) in values.iter().zip(&back).enumerate() {
                let step = scales[i / group];
                assert!((a - b).abs() <= step / 2.0 + 1e-7, "{a} vs {b}");
            }
        }
        // An all-zero row gets a harmless scale and decodes to zeros.
        let (codes, scales) = quantize_int8(&[0.0; 8], 8, 8);
        assert_eq!(dequantize_int8(&codes, &scales, 8), vec![0.0; 8]);
    }

    #[test]
    fn only_transformer_matrices_become_int8() {
        let t = |n: &str, s: Vec<usize>| (n.to_string(), s.clone(), vec![0.5; s.iter().product()]);
        let tensors = vec![
            t("blocks.0.attn.mat_qkv.weight", vec![6, 4]),
            t("blocks.0.attn.mat_qkv.bias", vec![6]),
            t("pos_1LC", vec![1, 3, 4]),
        ];
        let stored = store(&tensors, Storage::Int8, true, 0);
        let kinds: Vec<_> = stored.iter().map(|s| (s.name.as_str(), s.dtype)).collect();
        assert_eq!(
            kinds,
            vec![
                ("blocks.0.attn.mat_qkv.weight", Dtype::I8),
                ("blocks.0.attn.mat_qkv.weight.scales", Dtype::F32),
                ("blocks.0.attn.mat_qkv.bias", Dtype::F16),
                ("pos_1LC", Dtype::F16),
            ]
        );
        let vae = store(&tensors, Storage::Int8, false, 0);
        assert!(vae.iter().all(|s| s.dtype == Dtype::F16));
        let e = decode("w", Dtype::I8, &[6, 4], &stored[0].bytes, None).unwrap_err();
        assert!(e.to_string().contains("no '.scales'"), "{e}");
        let e = decode(
            "w",
            Dtype::I8,
            &[6, 4],
            &stored[0].bytes,
            Some((&[6, 3], vec![1.0; 18])),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dividing 4"), "{e}");
    }
}
