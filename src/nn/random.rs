//! Random initialisation as a [`TensorSource`], so a fresh model is built by the same loader
//! as a trained one.

use crate::error::Result;
use crate::rng::Rng;
use crate::weights::TensorSource;

/// A source of freshly initialised weights, deterministic in its seed: weights of linear and
/// conv layers ~ N(0, 0.02²) (the reference's `init_std` for the transformer), biases 0,
/// norm scales 1. Used for benchmarks at official shapes and as the start of training.
pub struct RandomSource {
    rng: Rng,
    /// `None`: He initialisation, std = √(2 / fan_in) with fan_in = the product of all but
    /// the first (output) dimension of the PyTorch-layout weight.
    std: Option<f32>,
}

impl RandomSource {
    pub fn new(seed: u64, std: f32) -> Self {
        Self {
            rng: Rng::new(seed),
            std: Some(std),
        }
    }

    /// He-initialised weights, for ReLU networks without normalisation (the classifier).
    pub fn he(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
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
