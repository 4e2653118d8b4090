//! A preallocated key/value cache: each scale runs one forward pass over its own tokens and
//! attends to every coarser scale through the cache.

use burn::tensor::{Device, Tensor};

/// Keys and values of one block, `[B, H, L, hd]` each, allocated once for the whole sequence
/// and filled scale by scale. Keys are stored already l2-normalised, as the reference does.
#[derive(Clone, Debug)]
pub struct KvCache {
    k: Tensor<4>,
    v: Tensor<4>,
    len: usize,
}

impl KvCache {
    /// A cache for `batch` rows (2B with CFG) and `seq_len` tokens.
    pub fn new(
        batch: usize,
        heads: usize,
        seq_len: usize,
        head_dim: usize,
        device: &Device,
    ) -> Self {
        let shape = [batch, heads, seq_len, head_dim];
        Self {
            k: Tensor::zeros(shape, device),
            v: Tensor::zeros(shape, device),
            len: 0,
        }
    }

    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the cached tokens (the buffers are kept for the next image).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Writes `k`, `v` (`[B, H, l, hd]`) after the cached tokens and returns views of all
    /// cached keys and values, `[B, H, len + l, hd]`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, l, hd] = k.dims();
        let range = [0..b, 0..h, self.len..self.len + l, 0..hd];
        self.k = self.k.clone().slice_assign(range.clone(), k);
        self.v = self.v.clone().slice_assign(range, v);
        self.len += l;
        (
            self.k.clone().narrow(2, 0, self.len),
            self.v.clone().narrow(2, 0, self.len),
        )
    }
}
