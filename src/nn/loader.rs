//! Weights: where tensors come from and how they become modules.
//!
//! Every module is built by one `load` function that asks a [`TensorSource`] for its tensors
//! by the reference implementation's key names (`blocks.3.attn.mat_qkv.weight`, ...), with the
//! shape it expects. The same path serves an official `.pth` file, our safetensors model
//! directory and random initialisation, so there is one loader and one key table, and every
//! shape is checked at the single place a tensor enters the model.

pub mod export;
pub mod format;
pub mod pth;
pub mod pth_write;
pub mod quant;
pub mod shards;
pub mod staged;

use std::collections::BTreeMap;

use burn::module::{Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Result, VarError};
use crate::kernels::{Int8Linear, Int8Weight, transposed_contiguous};
use crate::transformer::dense::Dense;

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
    fn into_float<const D: usize>(self, shape: [usize; D]) -> Tensor<D> {
        match self {
            OnDevice::Float(t) => t.reshape(shape),
            OnDevice::Int8(w) => transposed_contiguous(w.dequantized()).reshape(shape),
        }
    }

    /// A Linear layer's `[d_in, d_out]` matrix from PyTorch's `[d_out, d_in]`.
    fn into_linear_weight(self, d_in: usize, d_out: usize) -> Tensor<2> {
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

pub(crate) fn check_shape(key: &str, expected: &[usize], found: &[usize]) -> Result<()> {
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

/// A source of freshly initialised weights, deterministic in its seed: weights of linear and
/// conv layers ~ N(0, 0.02²) (the reference's `init_std` for the transformer), biases 0,
/// norm scales 1. Used for benchmarks at official shapes and as the start of training.
pub struct RandomSource {
    rng: crate::sampler::Rng,
    /// `None`: He initialisation, std = √(2 / fan_in) with fan_in = the product of all but
    /// the first (output) dimension of the PyTorch-layout weight.
    std: Option<f32>,
}

impl RandomSource {
    pub fn new(seed: u64, std: f32) -> Self {
        Self {
            rng: crate::sampler::Rng::new(seed),
            std: Some(std),
        }
    }

    /// He-initialised weights, for ReLU networks without normalisation (the classifier).
    pub fn he(seed: u64) -> Self {
        Self {
            rng: crate::sampler::Rng::new(seed),
            std: None,
        }
    }
}

impl TensorSource for RandomSource {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let is_norm = key.contains("norm") && leaf == "weight";
        Ok(match leaf {
            "bias" | "q_bias" | "v_bias" if !is_norm => vec![0.0; n],
            _ if is_norm => vec![1.0; n],
            _ => {
                let fan_in: usize = shape.iter().skip(1).product();
                let std = self
                    .std
                    .unwrap_or_else(|| (2.0 / fan_in.max(1) as f32).sqrt());
                (0..n).map(|_| self.rng.normal() * std).collect()
            }
        })
    }
    fn unused(&self) -> Vec<String> {
        Vec::new()
    }
}

/// 64-bit FNV-1a: stable across runs and platforms (parameter ids, file fingerprints).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A trainable parameter whose id is derived from its reference key (FNV-1a), so that the
/// same model loaded twice has the same ids and a saved optimizer state (keyed by id) applies
/// to a model resumed from a checkpoint.
fn trainable<const D: usize>(key: &str, tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::initialized(ParamId::from(fnv1a(key.as_bytes())), tensor).set_require_grad(true)
}

/// Builds burn modules from a [`TensorSource`] on one device.
pub struct Loader<'a> {
    source: &'a mut dyn TensorSource,
    device: Device,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a mut dyn TensorSource, device: &Device) -> Self {
        Self {
            source,
            device: device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A tensor with exactly this shape.
    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        if let Some(staged) = self.source.take_on_device(key, &shape)? {
            return Ok(staged.into_float(shape));
        }
        let values = self.source.take(key, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    pub fn param<const D: usize>(
        &mut self,
        key: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<D>>> {
        Ok(trainable(key, self.tensor(key, shape)?))
    }

    /// `nn.Linear(d_in, d_out)`: PyTorch stores `[out, in]`, burn multiplies by `[in, out]`.
    pub fn linear(&mut self, key: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let weight_key = format!("{key}.weight");
        let weight = match self.source.take_on_device(&weight_key, &[d_out, d_in])? {
            Some(staged) => staged.into_linear_weight(d_in, d_out),
            None => self.host_linear_weight(&weight_key, d_in, d_out)?,
        };
        self.linear_from(key, weight, bias)
    }

    /// The transpose is done on the host so the device holds a contiguous `[in, out]` matrix;
    /// a lazy transposed view would be re-laid out by every matmul.
    fn host_linear_weight(&mut self, key: &str, d_in: usize, d_out: usize) -> Result<Tensor<2>> {
        let w = self.source.take(key, &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for (o, row) in w.chunks_exact(d_in).enumerate() {
            for (i, v) in row.iter().enumerate() {
                t[i * d_out + o] = *v;
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(t, [d_in, d_out]),
            &self.device,
        ))
    }

    fn linear_from(&mut self, key: &str, weight: Tensor<2>, bias: bool) -> Result<Linear> {
        let d_out = weight.dims()[1];
        let bias = if bias {
            Some(self.param(&format!("{key}.bias"), [d_out])?)
        } else {
            None
        };
        Ok(Linear {
            weight: trainable(&format!("{key}.weight"), weight),
            bias,
        })
    }

    /// A transformer Linear layer: int8 in GPU memory when the file stores it as int8 per
    /// output channel and the device is a GPU (our WGSL kernel), else f32 as [`Self::linear`].
    pub fn dense(&mut self, key: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Dense> {
        if !(d_in.is_multiple_of(4) && crate::kernels::is_gpu(&self.device)) {
            return Ok(Dense::float(self.linear(key, d_in, d_out, bias)?));
        }
        let weight_key = format!("{key}.weight");
        let weight = match self.source.take_on_device(&weight_key, &[d_out, d_in])? {
            Some(OnDevice::Int8(weight)) => weight,
            Some(staged) => {
                let weight = staged.into_linear_weight(d_in, d_out);
                return Ok(Dense::float(self.linear_from(key, weight, bias)?));
            }
            None => match self.source.take_int8(&weight_key, &[d_out, d_in])? {
                Some((codes, scales)) => {
                    Int8Weight::new(&codes, scales, d_in, d_out, &self.device)?
                }
                None => return Ok(Dense::float(self.linear(key, d_in, d_out, bias)?)),
            },
        };
        let bias = if bias {
            Some(self.tensor(&format!("{key}.bias"), [d_out])?)
        } else {
            None
        };
        Ok(Dense::int8(Int8Linear::from_weight(weight, bias)?))
    }

    /// `nn.Conv2d(c_in, c_out, k, stride)` with bias; burn's weight layout equals PyTorch's.
    pub fn conv2d(
        &mut self,
        key: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: PaddingConfig2d,
    ) -> Result<Conv2d> {
        Ok(Conv2d {
            weight: self.param(&format!("{key}.weight"), [c_out, c_in, kernel, kernel])?,
            bias: Some(self.param(&format!("{key}.bias"), [c_out])?),
            stride: [stride, stride],
            kernel_size: [kernel, kernel],
            dilation: [1, 1],
            groups: 1,
            padding,
        })
    }

    /// The reference's `Normalize`: GroupNorm(32 groups, eps 1e-6, affine).
    pub fn group_norm(&mut self, key: &str, channels: usize) -> Result<GroupNorm> {
        Ok(GroupNorm {
            gamma: Some(self.param(&format!("{key}.weight"), [channels])?),
            beta: Some(self.param(&format!("{key}.bias"), [channels])?),
            num_groups: 32,
            num_channels: channels,
            epsilon: 1e-6,
            affine: true,
        })
    }

    /// Refuses a partial match: every tensor in the source must have been used.
    pub fn finish(self) -> Result<()> {
        let unused = self.source.unused();
        if unused.is_empty() {
            Ok(())
        } else {
            let shown: Vec<_> = unused.iter().take(8).cloned().collect();
            let more = if unused.len() > 8 {
                format!(" and {} more", unused.len() - 8)
            } else {
                String::new()
            };
            Err(VarError::UnexpectedTensors(format!(
                "{}{more}",
                shown.join(", ")
            )))
        }
    }
}
