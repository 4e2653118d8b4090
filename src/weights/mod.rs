//! Weight file formats, and nothing of the model: the official PyTorch `.pth` reader
//! ([`pth`], allow-listed pickle, never executed, and its writer), safetensors files
//! ([`safetensors`]), shards and their manifest ([`shards`]), f16/int8 storage ([`quant`]),
//! and the [`TensorSource`] they all hand tensors out through.

pub mod pth;
pub mod quant;
pub mod safetensors;
pub mod shards;
pub mod source;

pub use source::{
    OnDevice, TensorMap, TensorSource, check_finite, check_shape, is_recomputed_buffer,
};
