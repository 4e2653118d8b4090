//! The layer factory: [`Loader`] builds burn modules from a [`TensorSource`] on one device,
//! asking for every tensor by the reference's key name with the shape it expects, so one
//! loader serves an official `.pth`, a model directory and random initialisation, and every
//! shape is checked where a tensor enters the model.

use burn::module::{Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use super::export::{ParamKey, ParamKeys};
use super::{Conv, Dense};
use crate::error::{Result, VarError};
use crate::hash::fnv1a;
use crate::kernels::cpu::{CpuConv, CpuLinear};
use crate::kernels::int8::{Int8Linear, Int8Weight};
use crate::weights::{OnDevice, TensorSource, check_finite};

/// The id of the parameter stored under the reference key `key`: FNV-1a of the key, so that
/// the same model loaded twice has the same ids and a saved optimizer state (keyed by id)
/// applies to a model resumed from a checkpoint.
fn param_id(key: &str) -> ParamId {
    ParamId::from(fnv1a(key.as_bytes()))
}

/// What the layers whose storage is decided at load ([`Dense`], [`Conv`]) are built for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// burn's modules (and int8 on a GPU where the file stores int8): trainable, exportable.
    #[default]
    Burn,
    /// Inference on our CPU kernels where they run: a plain CPU device (not autodiff, not a
    /// GPU) of an x86-64 machine with AVX2 or AVX-512. Packed layers hold no burn parameters,
    /// so such a model can neither train nor be exported. Elsewhere this is [`Kernels::Burn`].
    CpuPacked,
}

/// Builds burn modules from a [`TensorSource`] on one device.
pub struct Loader<'a> {
    source: &'a mut dyn TensorSource,
    device: Device,
    /// Build [`Dense`] and [`Conv`] layers packed for the CPU kernels.
    cpu_packed: bool,
    /// The reference key of every parameter built so far: the exporter's table.
    keys: ParamKeys,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a mut dyn TensorSource, device: &Device) -> Self {
        Self {
            source,
            device: device.clone(),
            cpu_packed: false,
            keys: ParamKeys::default(),
        }
    }

    /// Builds the layers for `kernels` (where the device and the CPU allow it).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.cpu_packed = kernels == Kernels::CpuPacked
            && CpuLinear::supported()
            && !self.device.is_autodiff()
            && !crate::kernels::is_gpu(&self.device);
        self
    }

    /// Whether this loader packs layers for the CPU kernels.
    pub fn packs_for_cpu(&self) -> bool {
        self.cpu_packed
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `key`'s values from the source, refused when one is not finite: every tensor that
    /// reaches the model from the host passes here (device-staged ones are checked by the
    /// staged loader before they leave the host).
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let values = self.source.take(key, shape)?;
        check_finite(key, &values)?;
        Ok(values)
    }

    /// A tensor with exactly this shape.
    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        if let Some(staged) = self.source.take_on_device(key, &shape)? {
            return Ok(staged.into_float(shape));
        }
        let values = self.take(key, &shape)?;
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
        let tensor = self.tensor(key, shape)?;
        Ok(self.trainable(key, tensor, false))
    }

    /// A trainable parameter stored under `key` (see [`param_id`]), recorded in the key table
    /// with whether it is a Linear weight that burn holds transposed.
    fn trainable<const D: usize>(
        &mut self,
        key: &str,
        tensor: Tensor<D>,
        transposed: bool,
    ) -> Param<Tensor<D>> {
        let id = param_id(key);
        let entry = ParamKey {
            key: key.to_string(),
            transposed,
        };
        self.keys.insert(id, entry);
        Param::initialized(id, tensor).set_require_grad(true)
    }

    /// The reference key of every parameter this loader has built: what a module built by it
    /// keeps for [`super::export::export_module`].
    pub fn keys(&self) -> ParamKeys {
        self.keys.clone()
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
        let t = self.host_linear_values(key, d_in, d_out)?;
        Ok(Tensor::from_data(
            TensorData::new(t, [d_in, d_out]),
            &self.device,
        ))
    }

    /// PyTorch's `[out, in]` weight as burn's row-major `[in, out]` values.
    fn host_linear_values(&mut self, key: &str, d_in: usize, d_out: usize) -> Result<Vec<f32>> {
        let w = self.take(key, &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for (o, row) in w.chunks_exact(d_in).enumerate() {
            for (i, v) in row.iter().enumerate() {
                t[i * d_out + o] = *v;
            }
        }
        Ok(t)
    }

    /// An optional bias as host values.
    fn host_bias(&mut self, key: &str, bias: bool, len: usize) -> Result<Option<Vec<f32>>> {
        if !bias {
            return Ok(None);
        }
        Ok(Some(self.take(&format!("{key}.bias"), &[len])?))
    }

    fn linear_from(&mut self, key: &str, weight: Tensor<2>, bias: bool) -> Result<Linear> {
        let d_out = weight.dims()[1];
        let bias = if bias {
            Some(self.param(&format!("{key}.bias"), [d_out])?)
        } else {
            None
        };
        let weight = self.trainable(&format!("{key}.weight"), weight, true);
        Ok(Linear { weight, bias })
    }

    /// A transformer Linear layer: packed for the CPU kernels when this loader packs (any
    /// stored precision, dequantized to f32), int8 in GPU memory when the file stores it as
    /// int8 per output channel and the device is a GPU (our WGSL kernel), else f32 as
    /// [`Self::linear`].
    pub fn dense(&mut self, key: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Dense> {
        if self.cpu_packed {
            let weight = self.host_linear_values(&format!("{key}.weight"), d_in, d_out)?;
            let bias = self.host_bias(key, bias, d_out)?;
            return Ok(Dense::cpu(CpuLinear::from_f32(&weight, d_in, d_out, bias)));
        }
        if !(d_in.is_multiple_of(4) && crate::kernels::is_gpu(&self.device)) {
            return Ok(Dense::Float(self.linear(key, d_in, d_out, bias)?));
        }
        let weight_key = format!("{key}.weight");
        let weight = match self.source.take_on_device(&weight_key, &[d_out, d_in])? {
            Some(OnDevice::Int8(weight)) => weight,
            Some(staged) => {
                let weight = staged.into_linear_weight(d_in, d_out);
                return Ok(Dense::Float(self.linear_from(key, weight, bias)?));
            }
            None => match self.source.take_int8(&weight_key, &[d_out, d_in])? {
                Some((codes, scales)) => {
                    Int8Weight::new(&codes, scales, d_in, d_out, &self.device)?
                }
                None => return Ok(Dense::Float(self.linear(key, d_in, d_out, bias)?)),
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

    /// A VQ-VAE convolution ([`Self::conv2d`]): packed for the CPU kernels when this loader
    /// packs and the padding is explicit, else burn's.
    pub fn conv(
        &mut self,
        key: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: PaddingConfig2d,
    ) -> Result<Conv> {
        let pads = match padding {
            PaddingConfig2d::Valid => Some([0; 4]),
            PaddingConfig2d::Explicit(top, left, bottom, right) => Some([top, left, bottom, right]),
            PaddingConfig2d::Same => None,
        };
        match pads {
            Some(pads) if self.cpu_packed => {
                let shape = [c_out, c_in, kernel, kernel];
                let weight = self.take(&format!("{key}.weight"), &shape)?;
                let bias = self.take(&format!("{key}.bias"), &[c_out])?;
                let packed = CpuConv::new(&weight, c_in, c_out, kernel, stride, pads, Some(bias));
                Ok(Conv::cpu(packed))
            }
            _ => Ok(Conv::Burn(
                self.conv2d(key, c_in, c_out, kernel, stride, padding)?,
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::TensorMap;

    #[test]
    fn a_weight_that_is_not_finite_is_refused_with_its_name() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut map = TensorMap::default();
            map.insert("fc.weight", vec![2, 2], vec![1.0, bad, 0.0, 1.0]);
            map.insert("fc.bias", vec![2], vec![0.0, 0.0]);
            let mut loader = Loader::new(&mut map, &Device::flex());
            let err = loader.linear("fc", 2, 2, true).unwrap_err();
            assert!(
                matches!(&err, VarError::NonFinite { key } if key == "fc.weight"),
                "{err}"
            );
            assert_eq!(err.name(), "BadModel");
        }
        let mut map = TensorMap::default();
        map.insert("n.weight", vec![32], vec![1.0; 32]);
        map.insert("n.bias", vec![32], [vec![0.0; 31], vec![f32::NAN]].concat());
        let err = Loader::new(&mut map, &Device::flex())
            .group_norm("n", 32)
            .unwrap_err();
        assert!(err.to_string().contains("'n.bias'"), "{err}");
    }
}
