//! Where tensors come from: the [`TensorSource`] every weight format implements (official
//! `.pth`, our safetensors model directory, shards, int8 storage), asked for each tensor by
//! the reference's key name with the shape the model expects. Knows nothing of the model.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use crate::error::{Result, VarError};
use crate::kernels::int8::Int8Weight;
use crate::kernels::transposed_contiguous;

/// Something that hands out named f32 tensors.
pub trait TensorSource {
    /// The values of `key` in row-major order, after checking that its shape is `shape`.
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// Keys that exist but were never taken (buffers the model recomputes are excluded).
    fn unused(&self) -> Vec<String>;
    /// The int8 codes (`shape`, row-major) and per-row scales of `key` when it is stored that
    /// way, for kernels that keep them as they are; `None` means "use [`Self::take`]".
    fn take_int8(&mut self, _key: &str, _shape: &[usize]) -> Result<Option<(Vec<i8>, Vec<f32>)>> {
        Ok(None)
    }
    /// `key` when the source already holds it on the device (a sharded model staged shard by
    /// shard, see [`staged`]), after checking its shape; `None` means "use [`Self::take`]".
    fn take_on_device(&mut self, _key: &str, _shape: &[usize]) -> Result<Option<OnDevice>> {
        Ok(None)
    }
}

/// A tensor that is already in device memory.
// burn's tensor handles are a few hundred bytes each; each value is moved once at load.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum OnDevice {
    /// f32 values, flat, in the file's row-major order.
    Float(Tensor<1>),
    /// An int8 matrix packed as the int8 kernel reads it (GPU only).
    Int8(Int8Weight),
}

impl OnDevice {
    /// The values as a row-major f32 tensor of `shape` (an int8 matrix is dequantized on
    /// the device).
    pub fn into_float<const D: usize>(self, shape: [usize; D]) -> Tensor<D> {
        match self {
            OnDevice::Float(t) => t.reshape(shape),
            OnDevice::Int8(w) => transposed_contiguous(w.dequantized()).reshape(shape),
        }
    }

    /// A Linear layer's `[d_in, d_out]` matrix from PyTorch's `[d_out, d_in]`.
    pub fn into_linear_weight(self, d_in: usize, d_out: usize) -> Tensor<2> {
        match self {
            OnDevice::Float(t) => transposed_contiguous(t.reshape([d_out, d_in])),
            OnDevice::Int8(w) => w.dequantized(),
        }
    }
}

/// Reference buffers that are derived from the config, never loaded.
pub fn is_recomputed_buffer(key: &str) -> bool {
    key == "lvl_1L"
        || key == "attn_bias_for_masking"
        || key.ends_with(".zero_k_bias")
        || key == "quantize.ema_vocab_hit_SV"
}

/// Refuses a tensor with a NaN or an infinity, naming it.
pub fn check_finite(key: &str, values: &[f32]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(VarError::NonFinite {
            key: key.to_string(),
        })
    }
}

pub fn check_shape(key: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(VarError::ShapeMismatch {
            key: key.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}

/// An in-memory name → (shape, values) table; used for tests, synthetic checkpoints and
/// random initialisation snapshots.
#[derive(Default, Debug, Clone)]
pub struct TensorMap {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TensorMap {
    pub fn insert(&mut self, key: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.tensors.insert(key.into(), (shape, values));
    }
    pub fn get(&self, key: &str) -> Option<&(Vec<usize>, Vec<f32>)> {
        self.tensors.get(key)
    }
    pub fn remove(&mut self, key: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.tensors.remove(key)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &(Vec<usize>, Vec<f32>))> {
        self.tensors.iter()
    }
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

impl TensorSource for TensorMap {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (found, values) = self
            .tensors
            .remove(key)
            .ok_or_else(|| VarError::MissingTensor {
                key: key.to_string(),
                shape: shape.to_vec(),
            })?;
        check_shape(key, shape, &found)?;
        Ok(values)
    }
    fn unused(&self) -> Vec<String> {
        self.tensors
            .keys()
            .filter(|k| !is_recomputed_buffer(k))
            .cloned()
            .collect()
    }
}
