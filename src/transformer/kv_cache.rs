//! A preallocated key/value cache: each scale runs one forward pass over its own tokens and
//! attends to every coarser scale through the cache.

use burn::tensor::{Device, Tensor};

use crate::kernels::cpu::{HeadParams, HostKv};

/// Keys and values of one block for the whole sequence, filled scale by scale. Keys are stored
/// already l2-normalised, as the reference does.
///
/// Where they live is decided by the first scale that writes them: burn tensors
/// `[B, H, L, hd]` for blocks on burn's ops (the GPU), host memory in the CPU kernels' layout
/// ([`HostKv`]) for blocks whose Linear layers run on the CPU kernels. A model's blocks all
/// take one path, so a cache never needs both.
#[derive(Clone, Debug)]
pub struct KvCache {
    batch: usize,
    heads: usize,
    seq_len: usize,
    head_dim: usize,
    device: Device,
    store: Store,
    len: usize,
}

#[derive(Clone, Debug)]
enum Store {
    /// Nothing written yet.
    Unallocated,
    /// Keys and values (boxed: a burn tensor is over 600 bytes, the host cache 80).
    Tensors(Box<[Tensor<4>; 2]>),
    Host(HostKv),
}

impl KvCache {
    /// A cache for `batch` rows (2B with CFG) and `seq_len` tokens; the memory is taken on
    /// the first append, in the form that append needs.
    pub fn new(
        batch: usize,
        heads: usize,
        seq_len: usize,
        head_dim: usize,
        device: &Device,
    ) -> Self {
        Self {
            batch,
            heads,
            seq_len,
            head_dim,
            device: device.clone(),
            store: Store::Unallocated,
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
        if let Store::Host(host) = &mut self.store {
            host.reset();
        }
    }

    /// Writes `k`, `v` (`[B, H, l, hd]`) after the cached tokens and returns views of all
    /// cached keys and values, `[B, H, len + l, hd]`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, l, hd] = k.dims();
        if !matches!(self.store, Store::Tensors(_)) {
            assert!(
                self.is_empty(),
                "a KV cache takes one kind of append per image"
            );
            let shape = [self.batch, self.heads, self.seq_len, self.head_dim];
            self.store = Store::Tensors(Box::new([
                Tensor::zeros(shape, &self.device),
                Tensor::zeros(shape, &self.device),
            ]));
        }
        let Store::Tensors(tensors) = &mut self.store else {
            unreachable!("allocated above")
        };
        let [keys, values] = &mut **tensors;
        let range = [0..b, 0..h, self.len..self.len + l, 0..hd];
        *keys = keys.clone().slice_assign(range.clone(), k);
        *values = values.clone().slice_assign(range, v);
        self.len += l;
        (
            keys.clone().narrow(2, 0, self.len),
            values.clone().narrow(2, 0, self.len),
        )
    }

    /// [`HostKv::attend`] on this cache in host memory: `qkv` `[B, l, 3C]` (`mat_qkv`'s
    /// product) → the heads' outputs `[B, l, C]`, the new keys and values cached.
    pub fn attend_on_host(&mut self, qkv: &[f32], l: usize, params: &HeadParams) -> Vec<f32> {
        if !matches!(self.store, Store::Host(_)) {
            assert!(
                self.is_empty(),
                "a KV cache takes one kind of append per image"
            );
            self.store = Store::Host(HostKv::new(
                self.batch,
                self.heads,
                self.head_dim,
                self.seq_len,
            ));
        }
        let Store::Host(host) = &mut self.store else {
            unreachable!("allocated above")
        };
        let out = host.attend(qkv, l, params);
        self.len = host.len();
        out
    }
}
