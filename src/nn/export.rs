//! Module → reference-named tensors: the inverse of the modules' `load` functions, so trained
//! models are written in the same format (and key names) as converted official checkpoints.
//!
//! burn's visitor reports every field it enters (`blocks`, `0`, `attn`, `proj`, `weight`) with
//! the type that holds it, which gives each parameter its path. The fields are named as in the
//! reference, so only a few leaves differ, listed in [`reference_key`]; a round-trip test
//! checks that export and load agree on every key and value.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::weights::safetensors::NamedTensor;

/// The reference's name for the parameter at `path` inside a module of type `parent`
/// (burn's container type name, `Struct:Linear`), and whether it is a burn Linear weight that PyTorch stores
/// transposed.
fn reference_key(path: &[String], parent: &str) -> (String, bool) {
    let leaf = path.last().map(String::as_str).unwrap_or_default();
    let mut parts: Vec<String> = path[..path.len().saturating_sub(1)].to_vec();
    let is_linear = parent.ends_with("Linear");
    let is_norm = parent.ends_with("GroupNorm");
    // `nn.Sequential(SiLU, Linear)` in the reference: the Linear is item 1.
    if is_linear && parts.last().is_some_and(|p| p.ends_with("ada_lin")) {
        parts.push("1".into());
    }
    if parts.last().is_some_and(|p| p == "qresi_ls") {
        parts.insert(parts.len() - 1, "quant_resi".into());
    }
    if parts.len() >= 2 && parts[parts.len() - 2] == "qresi_ls" {
        parts.insert(parts.len() - 2, "quant_resi".into());
    }
    let leaf = match leaf {
        "gamma" if is_norm => "weight".to_string(),
        "beta" if is_norm => "bias".to_string(),
        "pos_1lc" => "pos_1LC".to_string(),
        "scale_mul_1h11" => "scale_mul_1H11".to_string(),
        // Bare embedding tables are `nn.Embedding`s in the reference.
        "class_emb" | "lvl_embed" | "embedding" => format!("{leaf}.weight"),
        other => other.to_string(),
    };
    parts.push(leaf);
    (
        parts.join("."),
        is_linear && path.last().is_some_and(|l| l == "weight"),
    )
}

struct Exporter {
    /// Field names from the root to the value being visited.
    path: Vec<String>,
    /// The type holding each of those fields.
    types: Vec<String>,
    out: Vec<NamedTensor>,
}

/// burn's visitor enters an enum module's variant as a field named after the variant
/// (`Float` of `Enum:Dense`, `Burn` of `Enum:Conv`), which the reference does not have.
fn is_variant(container_type: &str) -> bool {
    container_type.starts_with("Enum:")
}

impl ModuleVisitor for Exporter {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !is_variant(container_type) {
            self.path.push(name.to_string());
            self.types.push(container_type.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !is_variant(container_type) {
            self.path.pop();
            self.types.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let parent = self.types.last().map(String::as_str).unwrap_or_default();
        let (key, transpose) = reference_key(&self.path, parent);
        let shape = tensor.dims().to_vec();
        let values: Vec<f32> = tensor
            .to_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 after convert");
        if transpose {
            // burn `[in, out]` → PyTorch `[out, in]`.
            let (d_in, d_out) = (shape[0], shape[1]);
            let mut t = vec![0f32; values.len()];
            for (i, row) in values.chunks_exact(d_out).enumerate() {
                for (o, v) in row.iter().enumerate() {
                    t[o * d_in + i] = *v;
                }
            }
            self.out.push((key, vec![d_out, d_in], t));
        } else {
            self.out.push((key, shape, values));
        }
    }
}

/// Every float parameter of `module` under its reference key, in visiting order.
/// Native only: it reads tensors back synchronously.
pub fn export_module<M: Module>(module: &M) -> Vec<NamedTensor> {
    let mut exporter = Exporter {
        path: Vec::new(),
        types: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut exporter);
    exporter.out
}
