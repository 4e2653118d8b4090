//! Growing a trained transformer deeper (`--init-from` with a larger `--depth`): the trained
//! blocks keep their weights and each new block, appended after them, starts as the identity.
//! A block adds `γ₁ · attn(…)` and `γ₂ · ffn(…)` to the residual stream, with γ₁ and γ₂ produced
//! by its own `ada_lin` from the class; a zero `ada_lin` makes both gates 0 (DiT's adaLN-Zero),
//! so the grown model computes exactly what the trained one did and training continues from its
//! loss instead of from the shock of random blocks. The gates still get gradients (their output
//! is multiplied by non-zero branches), so the new blocks open as training finds them useful.

use crate::error::Result;
use crate::nn::RandomSource;
use crate::weights::TensorSource;

/// The weights of a transformer `trained_depth` blocks deep, extended by fresh blocks.
pub(super) struct GrownSource<'a> {
    trained: &'a mut dyn TensorSource,
    fresh: RandomSource,
    trained_depth: usize,
}

impl<'a> GrownSource<'a> {
    pub(super) fn new(trained: &'a mut dyn TensorSource, trained_depth: usize, seed: u64) -> Self {
        Self {
            trained,
            fresh: RandomSource::new(seed, 0.02),
            trained_depth,
        }
    }
}

/// The block index of a key such as `blocks.7.attn.mat_qkv.weight`.
fn block_of(key: &str) -> Option<usize> {
    key.strip_prefix("blocks.")?.split('.').next()?.parse().ok()
}

impl TensorSource for GrownSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match block_of(key) {
            Some(i) if i >= self.trained_depth => {
                if key.contains(".ada_lin.") {
                    Ok(vec![0.0; shape.iter().product()])
                } else {
                    self.fresh.take(key, shape)
                }
            }
            _ => self.trained.take(key, shape),
        }
    }

    fn unused(&self) -> Vec<String> {
        self.trained.unused()
    }
}

#[cfg(test)]
mod tests {
    use super::block_of;

    #[test]
    fn only_block_keys_have_a_block_index() {
        assert_eq!(block_of("blocks.7.attn.mat_qkv.weight"), Some(7));
        assert_eq!(block_of("blocks.12.ada_lin.1.bias"), Some(12));
        assert_eq!(block_of("head.weight"), None);
        assert_eq!(block_of("blocksX.1.w"), None);
    }
}
