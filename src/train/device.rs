//! The device a trainer runs on (`var train --device`): burn's autodiff over the CPU backend,
//! wgpu, or CUDA where this build has it. The model code is the same on every device, and
//! checkpoints are safetensors and burn records, device-free: a run resumes on any of them.

use burn::tensor::Device;

use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainDevice {
    /// burn-flex on every core.
    Cpu,
    /// wgpu: Vulkan on Linux (any GPU, or lavapipe without one), Metal, DirectX 12.
    Wgpu,
    /// NVIDIA through burn's CUDA backend (builds with `--features cuda`).
    Cuda,
}

impl TrainDevice {
    /// The device, or one sentence on why it cannot start.
    pub fn open(self) -> Result<Device> {
        match self {
            TrainDevice::Cpu => Ok(Device::flex()),
            TrainDevice::Wgpu => crate::devices::wgpu(),
            TrainDevice::Cuda => crate::devices::cuda(),
        }
    }
}
