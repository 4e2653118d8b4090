//! Layers and the layer factory, between the weight formats below and the model code above.
//!
//! Every module is built by one `load` function that asks the [`Loader`] for its tensors by
//! the reference implementation's key names (`blocks.3.attn.mat_qkv.weight`, ...), with the
//! shape it expects. The layers whose storage is decided at load live here too: [`Dense`]
//! (f32, int8 on the GPU, or packed for the CPU kernels) and [`Conv`] (burn's or packed).
//! [`export`] is the inverse: a trained module back to reference-named tensors.

pub mod conv;
pub mod dense;
pub mod export;
pub mod loader;
pub mod random;

pub use conv::Conv;
pub use dense::Dense;
pub use loader::{Kernels, Loader};
pub use random::RandomSource;

use burn::tensor::Tensor;

/// A tensor's values on the host, for the layers on the CPU kernels (whose activations are
/// f32) and the model code that keeps activations on the host between them.
pub fn host_f32<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data()
        .try_into_vec::<f32>()
        .expect("the CPU kernels take f32 activations")
}
