//! safetensors files in every precision we store (f32, f16, int8 with `.scales`, see
//! [`super::quant`]): reading them as a [`TensorSource`] and writing them.

use std::collections::BTreeSet;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::quant::{StoredTensor, store};
use super::{TensorSource, check_shape, is_recomputed_buffer};
use crate::config::Storage;
use crate::error::{Result, VarError};

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

/// The largest tensor named in the safetensors header of `file` (`header` holds at least the file's first
/// `8 + n` bytes, `n` the little-endian header length they start with) as the model holds it
/// once loaded ([`super::shards::device_bytes`]): its name and bytes, `None` for a file
/// without tensors. Only the header is read, so a caller can check a file against a device's
/// limits before handing the whole file over.
pub fn largest_tensor(
    header: &[u8],
    file: &str,
    part: super::shards::Part,
    gpu: bool,
) -> Result<Option<(String, u64)>> {
    let bad = |m: &str| VarError::Safetensors {
        file: file.to_string(),
        message: m.to_string(),
    };
    let n = header_len(header)
        .ok_or_else(|| bad("the file is shorter than its 8-byte header length"))?;
    let json = header
        .get(8..8 + n)
        .ok_or_else(|| bad("the header is longer than the bytes given"))?;
    let table: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| bad(&format!("the header is not JSON: {e}")))?;
    let mut best: Option<(String, u64)> = None;
    for (name, t) in &table {
        if name == "__metadata__" {
            continue;
        }
        let (Some(dtype), Some([start, end])) = (
            t.get("dtype").and_then(|d| d.as_str()),
            t.get("data_offsets")
                .and_then(|o| serde_json::from_value::<[u64; 2]>(o.clone()).ok()),
        ) else {
            return Err(bad(&format!(
                "tensor '{name}' has no dtype or data_offsets"
            )));
        };
        let bytes = super::shards::device_bytes(dtype, end.saturating_sub(start), part, gpu);
        if best.as_ref().is_none_or(|(_, b)| bytes > *b) {
            best = Some((name.clone(), bytes));
        }
    }
    Ok(best)
}

/// The header length a safetensors file starts with, when it fits in memory.
pub fn header_len(bytes: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    usize::try_from(n)
        .ok()
        .filter(|n| n.checked_add(8).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::shards::Part;

    fn header(bytes: &[u8]) -> &[u8] {
        &bytes[..8 + header_len(bytes).unwrap()]
    }

    #[test]
    fn the_largest_tensor_is_read_from_the_header_alone() {
        let tensors: Vec<NamedTensor> = vec![
            ("a".into(), vec![4, 8], vec![0.5; 32]),
            ("b".into(), vec![16], vec![1.0; 16]),
        ];
        let f32_file = safetensors_bytes(&tensors).unwrap();
        let largest = largest_tensor(header(&f32_file), "x", Part::Var, true).unwrap();
        assert_eq!(largest, Some(("a".to_string(), 128)));
        // f16 is decoded to f32 at load: the device holds twice the file's bytes.
        let f16_file = stored_bytes(&store(&tensors, Storage::F16, true, 0)).unwrap();
        let largest = largest_tensor(header(&f16_file), "x", Part::Var, true).unwrap();
        assert_eq!(largest, Some(("a".to_string(), 128)));
        // A header cut short is refused, naming the file.
        let short = &f32_file[..header(&f32_file).len() - 3];
        let err = largest_tensor(short, "var.safetensors", Part::Var, true).unwrap_err();
        assert!(err.to_string().contains("var.safetensors"), "{err}");
        assert!(header_len(&f32_file[..5]).is_none());
    }
}
