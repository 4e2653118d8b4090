//! GroupNorm, optionally followed by SiLU, in place on NCHW host data: what the VQ-VAE runs
//! before nearly every convolution, for the layers on the CPU kernels.
//!
//! burn's GroupNorm is a chain of tensor ops (mean, subtract, square, mean, add, sqrt,
//! divide, reshape, multiply, add) and SiLU two more (sigmoid, multiply), each a pass over
//! the activation, which at 256 px is 160 channels x 65,536 pixels (40 MiB). Here it is
//! three passes: the mean, the variance (two-pass, as burn and PyTorch compute it), and one
//! that normalises, applies the channel's scale and shift and SiLU together, with an `exp`
//! written so that the compiler vectorises it.

use super::for_each_chunk_mut;

/// `x [batch, channels, plane]` (NCHW, `plane = h·w`) normalised per (image, group of
/// `channels / groups` channels) to zero mean and unit variance (biased, with `epsilon`),
/// times `gamma` plus `beta` per channel, then SiLU (`y·σ(y)`) when `silu`, in place.
///
/// # Panics
/// When the shapes disagree (`x` not a whole number of images, `groups` not dividing
/// `channels`, `gamma`/`beta` not one value per channel).
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &mut [f32],
    channels: usize,
    plane: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    silu: bool,
) {
    assert!(
        groups > 0 && channels.is_multiple_of(groups),
        "groups must divide channels"
    );
    assert!(
        gamma.len() == channels && beta.len() == channels,
        "one gamma and beta per channel"
    );
    let per_group = channels / groups * plane;
    if per_group == 0 {
        return;
    }
    assert!(
        x.len().is_multiple_of(channels * plane),
        "input is not [B, channels, plane]"
    );
    for_each_chunk_mut(x, per_group, |index, values| {
        let first_channel = index % groups * (channels / groups);
        normalize_group(values, plane, first_channel, gamma, beta, epsilon, silu);
    });
}

/// One (image, group): `values` holds its channels' planes, the first being `first_channel`.
fn normalize_group(
    values: &mut [f32],
    plane: usize,
    first_channel: usize,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    silu: bool,
) {
    let count = values.len() as f64;
    let mean = sum(values, |v| v) / count;
    let mean32 = mean as f32;
    let variance = sum(values, |v| (v - mean32) * (v - mean32)) / count;
    let inv_std = 1.0 / (variance + epsilon).sqrt();
    for (c, channel) in values.chunks_exact_mut(plane).enumerate() {
        let scale = f64::from(gamma[first_channel + c]) * inv_std;
        let shift = (f64::from(beta[first_channel + c]) - mean * scale) as f32;
        let scale = scale as f32;
        if silu {
            for v in channel.iter_mut() {
                let y = *v * scale + shift;
                *v = y / (1.0 + exp(-y));
            }
        } else {
            for v in channel.iter_mut() {
                *v = *v * scale + shift;
            }
        }
    }
}

/// `Σ f(v)` over `values`: sixteen f32 lanes (which the compiler keeps in vector registers)
/// over blocks of 4,096 values, the blocks added in f64, so a 10-million-value group loses
/// nothing to the order of the additions.
pub(super) fn sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    const LANES: usize = 16;
    let mut total = 0f64;
    for block in values.chunks(4096) {
        let mut lanes = [0f32; LANES];
        let mut tail = block.chunks_exact(LANES);
        for chunk in &mut tail {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        let rest: f32 = tail.remainder().iter().map(|&v| f(v)).sum();
        total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(rest);
    }
    total
}

/// `eˣ` to within a few ulp for f32, clamped to `[-87, 88]` (the results there are already
/// 0 and infinity to SiLU), in arithmetic the compiler vectorises: `x = n·ln 2 + r` with `n`
/// the nearest integer (rounded by adding and removing 1.5·2²³), `eʳ` by its Taylor series
/// to degree 7 (for |r| ≤ ln 2 / 2 the remainder is below 6e-9, under half an f32 ulp), and
/// `2ⁿ` built in the exponent bits.
#[inline]
pub(super) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that n·LN2_HI is exact for |n| < 256.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    // t = 1.5·2²³ + n exactly, so n is also t's low mantissa bits: read from there, 2ⁿ needs
    // no float-to-int conversion (which does not vectorise).
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let n = t.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::super::testing::value;
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_the_f64_one() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, expected {want}"
            );
            x += 0.001_7;
        }
        // Past the clamp SiLU sees 0 and a huge value, never NaN.
        assert!(exp(-1e4) >= 0.0 && exp(-1e4) < 1e-37);
        assert!(exp(1e4).is_finite() && exp(1e4) > 1e38);
    }

    /// GroupNorm then (optionally) SiLU in f64, as PyTorch defines them.
    fn reference(
        x: &[f32],
        (channels, plane, groups): (usize, usize, usize),
        gamma: &[f32],
        beta: &[f32],
        silu: bool,
    ) -> Vec<f32> {
        let per = channels / groups * plane;
        let mut out = Vec::with_capacity(x.len());
        for (index, group) in x.chunks(per).enumerate() {
            let n = group.len() as f64;
            let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = group
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            for (i, &v) in group.iter().enumerate() {
                let c = index % groups * (channels / groups) + i / plane;
                let y = (f64::from(v) - mean) / (var + 1e-6).sqrt() * f64::from(gamma[c])
                    + f64::from(beta[c]);
                out.push(if silu { y / (1.0 + (-y).exp()) } else { y } as f32);
            }
        }
        out
    }

    #[test]
    fn group_norm_and_silu_match_their_definitions() {
        // Two images, 12 channels in 4 groups, 7x5 pixels; values off-centre and scaled so
        // that the mean and variance matter.
        let (batch, channels, plane, groups) = (2, 12, 35, 4);
        let x: Vec<f32> = (0..batch * channels * plane)
            .map(|i| 3.0 + 5.0 * value(i, 21))
            .collect();
        let gamma: Vec<f32> = (0..channels).map(|i| 1.0 + value(i, 22)).collect();
        let beta: Vec<f32> = (0..channels).map(|i| value(i, 23)).collect();
        for silu in [false, true] {
            let mut got = x.clone();
            group_norm(&mut got, channels, plane, groups, &gamma, &beta, 1e-6, silu);
            let want = reference(&x, (channels, plane, groups), &gamma, &beta, silu);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-6,
                    "silu {silu}: element {i} is {g}, expected {w}"
                );
            }
        }
    }
}
