//! GELU (the tanh approximation VAR's MLPs use) in place on host data, for the MLPs on the
//! CPU kernels: `fc1`'s output goes through it and straight into `fc2` without becoming a
//! burn tensor.
//!
//! burn's form of it (`kernels::activation::gelu_tanh_plain`) is eight tensor ops, each a pass
//! over the MLP's hidden activation (4C wide: at VAR-d16's last scale, 512 rows x 4096 with
//! CFG, 8 MiB), with `tanh` a libm call per element. Here it is one pass, through the
//! identity `½·x·(1 + tanh u) = x·σ(2u)` and the vectorisable `exp` of the GroupNorm.

use super::for_each_chunk_mut;
use super::norm::exp;

/// `x ← ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` for every element, as PyTorch's
/// `gelu(approximate="tanh")` defines it.
pub fn gelu_tanh(x: &mut [f32]) {
    // Enough work per task to be worth a thread (VAR's small scales are a few rows).
    const CHUNK: usize = 1 << 14;
    for_each_chunk_mut(x, CHUNK, |_, piece| gelu_tanh_serial(piece));
}

fn gelu_tanh_serial(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x {
        let u = SQRT_2_OVER_PI * (*v + 0.044_715 * *v * *v * *v);
        // ½(1 + tanh u) = σ(2u) = 1 / (1 + e^(−2u)); past exp's clamp, x / ∞ is the 0 (of
        // x's sign) that x·σ(2u) rounds to anyway.
        *v /= 1.0 + exp(-2.0 * u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_tanh_matches_its_definition() {
        // Both tails, every value between at a spacing that is no multiple of anything,
        // the exact edges, and a length that leaves a partial chunk.
        let mut x: Vec<f32> = (0..40_001).map(|i| -20.0 + i as f32 * 0.001).collect();
        x.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            50.0,
            -50.0,
            1e4,
            -1e4,
            f32::MIN_POSITIVE,
        ]);
        let mut got = x.clone();
        gelu_tanh(&mut got);
        for (&v, &g) in x.iter().zip(&got) {
            let v64 = f64::from(v);
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v64 + 0.044715 * v64.powi(3));
            let want = 0.5 * v64 * (1.0 + u.tanh());
            let error = (f64::from(g) - want).abs();
            assert!(
                error <= 1e-6 * want.abs().max(1e-3),
                "gelu({v}) = {g}, expected {want}"
            );
        }
    }
}
