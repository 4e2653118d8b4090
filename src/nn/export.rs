//! Module → reference-named tensors: the inverse of the modules' `load` functions, so trained
//! models are written in the same format (and key names) as converted official checkpoints.
//!
//! There is no key guessing: the [`super::Loader`] records the reference key of every
//! parameter it builds ([`ParamKeys`], by parameter id), each exported module keeps its
//! loader's table ([`HasParamKeys`]), and burn's parameter visitor, which sees every
//! parameter with its id (also after training steps), looks each one up. A round-trip test
//! checks that export and load agree on every key and value.

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::error::{Result, VarError};
use crate::weights::safetensors::NamedTensor;

/// Where one parameter lives in the reference's state dict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamKey {
    /// The reference key (`blocks.3.attn.proj.weight`).
    pub key: String,
    /// A Linear weight, which PyTorch stores `[out, in]` and burn multiplies as `[in, out]`.
    pub transposed: bool,
}

/// The reference key of every parameter one loader built, by parameter id. Cheap to clone:
/// a module built by the loader keeps one.
#[derive(Clone, Debug, Default)]
pub struct ParamKeys(Arc<HashMap<ParamId, ParamKey>>);

impl ParamKeys {
    pub(super) fn insert(&mut self, id: ParamId, key: ParamKey) {
        Arc::make_mut(&mut self.0).insert(id, key);
    }

    pub fn get(&self, id: &ParamId) -> Option<&ParamKey> {
        self.0.get(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A module that knows the reference keys of its parameters (the ones its loader recorded).
pub trait HasParamKeys {
    fn param_keys(&self) -> &ParamKeys;
}

struct Exporter<'a> {
    keys: &'a ParamKeys,
    out: Vec<NamedTensor>,
    /// The first parameter without a recorded key (a bug, not bad input).
    unknown: Option<ParamId>,
}

impl ModuleVisitor for Exporter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(ParamKey { key, transposed }) = self.keys.get(&param.id) else {
            self.unknown.get_or_insert(param.id);
            return;
        };
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let values: Vec<f32> = tensor
            .to_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 after convert");
        if *transposed {
            // burn `[in, out]` → PyTorch `[out, in]`.
            let (d_in, d_out) = (shape[0], shape[1]);
            let mut t = vec![0f32; values.len()];
            for (i, row) in values.chunks_exact(d_out).enumerate() {
                for (o, v) in row.iter().enumerate() {
                    t[o * d_in + i] = *v;
                }
            }
            self.out.push((key.clone(), vec![d_out, d_in], t));
        } else {
            self.out.push((key.clone(), shape, values));
        }
    }
}

/// Every float parameter of `module` under its reference key, in visiting order.
/// Native only: it reads tensors back synchronously.
pub fn export_module<M: Module + HasParamKeys>(module: &M) -> Result<Vec<NamedTensor>> {
    let mut exporter = Exporter {
        keys: module.param_keys(),
        out: Vec::new(),
        unknown: None,
    };
    module.visit(&mut exporter);
    match exporter.unknown {
        None => Ok(exporter.out),
        Some(id) => Err(VarError::InvalidArgument(format!(
            "parameter {id} was not built by the loader, so it has no reference key to export"
        ))),
    }
}
