//! The devices a trainer runs on (`var train --device`): burn's autodiff over the CPU
//! backend, wgpu, or CUDA where this build has it; a list (`--device cuda:0,cuda:1`) splits
//! each batch over them ([`super::parallel`]). The model code is the same on every device, and
//! checkpoints are safetensors and burn records, device-free: a run resumes on any of them.

use burn::tensor::Device;

use crate::error::{Result, VarError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainDevice {
    /// burn-flex on every core.
    Cpu,
    /// wgpu's default adapter: Vulkan on Linux (any GPU, or lavapipe without one), Metal,
    /// DirectX 12.
    Wgpu,
    /// An NVIDIA GPU by index, through burn's CUDA backend (builds with `--features cuda`).
    Cuda(usize),
}

impl std::str::FromStr for TrainDevice {
    type Err = VarError;
    /// `cpu`, `wgpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None if s == "cpu" => Ok(Self::Cpu),
            None if s == "wgpu" => Ok(Self::Wgpu),
            None if s == "cuda" => Ok(Self::Cuda(0)),
            Some(("cuda", n)) if n.parse::<usize>().is_ok() => {
                Ok(Self::Cuda(n.parse().expect("checked")))
            }
            _ => Err(VarError::InvalidArgument(format!(
                "unknown device '{s}': use cpu, wgpu, cuda or cuda:N (a list splits each batch)"
            ))),
        }
    }
}

impl TrainDevice {
    /// The device, or one sentence on why it cannot start.
    pub fn open(self) -> Result<Device> {
        match self {
            TrainDevice::Cpu => Ok(Device::flex()),
            TrainDevice::Wgpu => crate::devices::wgpu(),
            TrainDevice::Cuda(index) => crate::devices::cuda(index),
        }
    }
}

/// The autodiff devices of a `--device` list, each opened once.
pub fn open_all(list: &[TrainDevice]) -> Result<Vec<Device>> {
    if list.is_empty() {
        return Err(VarError::InvalidArgument(
            "--device needs at least one device".into(),
        ));
    }
    list.iter().map(|d| Ok(d.open()?.autodiff())).collect()
}
