//! The project's one seeded PRNG (sampling, random initialisation, data order, tests).
//!
//! ChaCha8 with f64 arithmetic through `libm`'s pure-Rust `log`/`cos`, so a seed gives the
//! same stream natively and in wasm.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The project's seeded PRNG: ChaCha8, identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1): safe to take logarithms of.
    fn uniform_open(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform_open(), self.uniform());
        (libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(std::f64::consts::TAU * u2)) as f32
    }

    /// Standard Gumbel: `−ln(E)` with `E ~ Exp(1)`, as the reference draws it.
    pub fn gumbel(&mut self) -> f64 {
        -libm::log(-libm::log(self.uniform_open()))
    }

    /// A uniform integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }
}
