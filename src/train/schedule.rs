//! The learning-rate schedules of the three trainers, side by side: the transformer's warm-up
//! and cosine decay to a tenth, the VQ-VAE's staged warm-up with constant or cosine decay, and
//! the classifier's plain cosine.
//!
//! They are three formulas, not one with parameters: each keeps the exact expression (float
//! type and order of operations) its trainer has always used, so a resumed run, or a run
//! repeated from the same seed, steps with bit-identical learning rates. Written as one
//! parameterised curve, `π·s/n` and `π·(s/n)` would already round differently.

use std::f64::consts::PI;

/// The transformer's schedule: linear warm-up over `warmup` steps (the first step at
/// `peak / warmup`), then cosine decay from `peak` to `peak / 10` at `steps`.
pub fn warmup_cosine_to_tenth(peak: f64, step: usize, warmup: usize, steps: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = ((step - warmup) as f64 / (steps.saturating_sub(warmup)).max(1) as f64).min(1.0);
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (PI * t).cos()))
}

/// What follows the warm-up in [`staged_warmup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    /// The peak rate until the end.
    Constant,
    /// Cosine from the peak down to zero at the last step.
    Cosine,
}

/// The VQ-VAE's schedule: the rate of `step` (0-based) in a stage that began at
/// `stage_start`: linear warm-up over `warmup` steps of the stage, then `decay` to zero at
/// `steps` (counted from the stage's start, so each stage warms up and decays on its own).
pub fn staged_warmup(
    peak: f64,
    step: usize,
    stage_start: usize,
    warmup: usize,
    steps: usize,
    decay: Decay,
) -> f64 {
    let into_stage = step.saturating_sub(stage_start);
    let stage_len = steps.saturating_sub(stage_start).max(1);
    let warm = ((into_stage + 1) as f64 / warmup.max(1) as f64).min(1.0);
    let fall = if decay == Decay::Cosine {
        0.5 * (1.0 + (PI * into_stage as f64 / stage_len as f64).cos())
    } else {
        1.0
    };
    peak * warm * fall
}

/// The classifier's schedule: cosine from `peak` at step 0 towards zero at `steps`, no
/// warm-up.
pub fn cosine_to_zero(peak: f64, step: usize, steps: usize) -> f64 {
    let t = step as f64 / steps as f64;
    peak * 0.5 * (1.0 + (PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!((warmup_cosine_to_tenth(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine_to_tenth(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine_to_tenth(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine_to_tenth(1.0, 100, 10, 100) - 0.1).abs() < 1e-12);
        assert!(warmup_cosine_to_tenth(1.0, 55, 10, 100) < 0.6);
    }
}
