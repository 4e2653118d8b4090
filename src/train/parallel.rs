//! Data parallelism over several devices, with burn's own pieces and no all-reduce of ours:
//! the module is forked to each device (`Module::fork`), each device computes the loss of its
//! share of the batch in its own thread, and the per-device gradients go to the optimizer as
//! one `MultiGradientsParams` (`step_multi`), which sums each parameter's gradients on one
//! device. Each share's loss is weighted by its share of the batch, so the sum is the
//! gradient of the whole batch's mean loss: one step on N devices is one step on one.

use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::{Device, Tensor};

use crate::error::{Result, VarError};

/// A batch of `n` split over `devices`: contiguous ranges whose sizes differ by at most one
/// (empty ones left out, so a batch smaller than the device count uses fewer devices).
pub fn shares(n: usize, devices: usize) -> Vec<Range<usize>> {
    let devices = devices.max(1);
    let (base, extra) = (n / devices, n % devices);
    let mut start = 0;
    (0..devices)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// One step's gradients of `module` over `devices` for a batch of `n` examples. `loss` gets
/// the module on a device, that device's share (a range of positions in the batch) and the
/// device, and returns the
/// share's mean loss and values to log (or the error that stops the step); the logged values
/// come back weighted like the loss (the whole batch's means).
pub fn gradients<M, F>(
    module: &M,
    devices: &[Device],
    n: usize,
    loss: F,
) -> Result<(MultiGradientsParams, Vec<f32>)>
where
    M: Module + Send + Sync,
    F: Fn(&M, Range<usize>, &Device) -> Result<(Tensor<1>, Vec<f32>)> + Sync,
{
    let parts: Vec<Result<(GradientsParams, Device, Vec<f32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares(n, devices.len())
            .into_iter()
            .zip(devices)
            .map(|(range, device)| {
                let loss = &loss;
                s.spawn(move || {
                    let forked = module.clone().fork(device);
                    let weight = range.len() as f32 / n as f32;
                    let (value, logged) = loss(&forked, range, device)?;
                    let grads = GradientsParams::from_grads((value * weight).backward(), &forked);
                    let logged = logged.into_iter().map(|v| v * weight).collect();
                    Ok((grads, device.clone(), logged))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<std::result::Result<_, _>>()
    })
    .map_err(|_| VarError::Device("a device's share of the training step failed".into()))?;
    let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
    let mut logged = vec![0f32; parts.first().map_or(0, |p| p.2.len())];
    let mut grads = MultiGradientsParams::default();
    for (g, device, values) in parts {
        logged.iter_mut().zip(values).for_each(|(sum, v)| *sum += v);
        grads.grads.push((g, device));
    }
    Ok((grads, logged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_evenly() {
        assert_eq!(shares(10, 3), [0..4, 4..7, 7..10]);
        assert_eq!(shares(2, 4), [0..1, 1..2]);
        assert_eq!(shares(5, 1).len(), 1);
        assert_eq!(shares(0, 3).len(), 0);
    }
}
