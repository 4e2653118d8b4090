//! What torch's globals mean to the machine: the allow-list of names a state dict may
//! import, and the "calls" that rebuild a tensor, which only record its storage, offset,
//! shape and strides. This allow-list is the whole security boundary of the reader:
//! nothing outside it can be named, and nothing is ever called.

use super::{Id, Machine, Obj, Storage};
use crate::weights::pth::{DType, PthError, PthTensor};

/// The only callables the VM knows; resolving a global yields one of these or an error.
#[derive(Debug, Clone, Copy)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

impl Machine<'_> {
    /// GLOBAL and STACK_GLOBAL: the allow-list is the whole security boundary.
    pub(super) fn global(&mut self, module: &str, name: &str) -> Result<(), PthError> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", class) => DType::from_storage_class(class).map(Global::Storage),
            _ => None,
        };
        let Some(global) = global else {
            let name = format!("{module}.{name}");
            return Err(PthError::ForbiddenGlobal {
                pos: self.op_pos,
                name,
            });
        };
        self.push_new(Obj::Global(global))
    }

    /// BINPERSID, with torch's contract: `('storage', StorageClass, key, location, numel)`.
    pub(super) fn persistent_load(&mut self) -> Result<(), PthError> {
        let pid = self.pop()?;
        let bad = || self.invalid("persistent id is not ('storage', type, key, location, numel)");
        let Obj::Tuple(items) = self.obj(pid) else {
            return Err(bad());
        };
        let &[tag, class, key, _location, numel] = items.as_slice() else {
            return Err(bad());
        };
        let Obj::Global(Global::Storage(dtype)) = *self.obj(class) else {
            return Err(bad());
        };
        if self.str_of(tag, "persistent id tag")? != "storage" {
            return Err(bad());
        }
        let key = self.str_of(key, "storage key")?.to_owned();
        let numel = self.usize_of(numel, "storage size")?;
        self.push_new(Obj::Storage(Box::new(Storage { key, dtype, numel })))
    }

    /// REDUCE and NEWOBJ "call" an allow-listed global by building what it would return.
    pub(super) fn reduce(&mut self, newobj: bool) -> Result<(), PthError> {
        let (args, func) = (self.pop()?, self.pop()?);
        let global = match self.obj(func) {
            Obj::Global(Global::OrderedDict) => Global::OrderedDict,
            Obj::Global(g) if !newobj => *g,
            other => {
                return Err(self.invalid(format!("cannot call or construct a {}", other.kind())));
            }
        };
        let Obj::Tuple(args) = self.obj(args) else {
            return Err(self.invalid(format!("call arguments are a {}", self.obj(args).kind())));
        };
        let id = match (global, args.as_slice()) {
            (Global::OrderedDict, []) => self.alloc(Obj::Dict(Vec::new()))?,
            (Global::RebuildParameter, &[tensor, _, _])
                if matches!(self.obj(tensor), Obj::Tensor(_)) =>
            {
                tensor
            }
            (Global::RebuildTensorV2, args) => {
                let tensor = self.rebuild_tensor(args)?;
                self.charge(tensor.built_size())?;
                self.alloc(Obj::Tensor(Box::new(tensor)))?
            }
            (global, args) => {
                let n = args.len();
                return Err(self.invalid(format!("unexpected call {global:?} with {n} arguments")));
            }
        };
        self.push(id)
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    /// Bounds against the storage are checked later, once the tensor's key is known.
    fn rebuild_tensor(&self, args: &[Id]) -> Result<PthTensor, PthError> {
        let (&[storage, offset, size, stride, _, _] | &[storage, offset, size, stride, _, _, _]) =
            args
        else {
            return Err(self.invalid("_rebuild_tensor_v2 takes 6 or 7 arguments"));
        };
        let Obj::Storage(storage) = self.obj(storage) else {
            let found = self.obj(storage).kind();
            return Err(self.invalid(format!("_rebuild_tensor_v2's storage is a {found}")));
        };
        let (shape, stride) = (self.dims(size, "size")?, self.dims(stride, "stride")?);
        if shape.len() != stride.len() {
            return Err(self.invalid("tensor size and stride have different lengths"));
        }
        let (storage, storage_numel, dtype) = (storage.key.clone(), storage.numel, storage.dtype);
        let offset = self.usize_of(offset, "storage offset")?;
        Ok(PthTensor {
            shape,
            dtype,
            storage,
            storage_numel,
            offset,
            stride,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::weights::pth::PthError;
    use crate::weights::pth::testing::{le, pickle_err, with_storage};
    use crate::weights::pth::write::Pickle as P;

    #[test]
    fn parameters_metadata_memo_and_duplicate_keys() {
        // `_rebuild_parameter` around a tensor, memo reuse, SETITEMS, a key set
        // twice, and torch's `_metadata` BUILD on the state dict.
        let pickle = P::new()
            .global("collections", "OrderedDict")
            .op(b"q\x00)R(")
            .s("a")
            .global("torch._utils", "_rebuild_parameter")
            .op(b"(")
            .tensor("FloatStorage", "0", 4, (0, &[2, 2], &[2, 1]))
            .op(&[0x88])
            .odict()
            .op(b"tR")
            .s("b")
            .tensor("FloatStorage", "0", 4, (2, &[2], &[1]))
            .s("a")
            .tensor("FloatStorage", "0", 4, (0, &[4], &[1]))
            .op(b"u}")
            .s("_metadata")
            .op(b"h\x00)R")
            .s("")
            .op(b"}")
            .s("version")
            .op(b"K\x01sssb")
            .done();
        let f = with_storage(&pickle, &le([1.0f32, 2.0, 3.0, 4.0].map(f32::to_le_bytes))).unwrap();
        assert_eq!(f.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(f.read_f32("a").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(f.read_f32("b").unwrap(), [3.0, 4.0]);
    }

    #[test]
    fn refuses_forbidden_globals_before_running_anything() {
        let os_system = P::new()
            .global("os", "system")
            .s("echo pwned")
            .op(b"\x85R.")
            .bytes();
        let err = pickle_err(&os_system);
        assert!(matches!(&err, PthError::ForbiddenGlobal { name, pos: 2 } if name == "os.system"));
        assert!(
            err.to_string().contains("forbidden global 'os.system'"),
            "{err}"
        );
        let err = pickle_err(&P::new().s("builtins").s("eval").op(&[0x93]).done());
        assert!(matches!(&err, PthError::ForbiddenGlobal { name, .. } if name == "builtins.eval"));
        // An allow-listed module does not make its other members reachable.
        let err = pickle_err(&P::new().global("torch", "load").done());
        assert!(matches!(err, PthError::ForbiddenGlobal { .. }), "{err}");
    }
}
