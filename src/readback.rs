//! Reading tensors back from the device, without blocking: the browser forbids blocking
//! reads, and natively the same futures are driven by `pollster::block_on`.

use burn::tensor::{Int, Tensor};

use crate::error::{Result, VarError};

/// Reads a tensor back to the CPU without blocking (the browser forbids blocking reads).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| VarError::Device(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| VarError::Device(format!("{e:?}")))
}

/// Reads integer tensors (token maps) back to the CPU without blocking.
pub async fn read_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    t.into_data_async()
        .await
        .map_err(|e| VarError::Device(format!("{e:?}")))?
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| VarError::Device(format!("{e:?}")))
}
