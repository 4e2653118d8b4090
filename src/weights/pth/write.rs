//! Writes state dicts as PyTorch `torch.save` checkpoints (zip + protocol-2 pickle), laid out
//! as torch lays them out, so the converter can be run at official scale without the official
//! files: `var random-checkpoint` writes random weights under the official key names and
//! shapes. The pickle holds only what [`super`] reads (an `OrderedDict` of
//! `_rebuild_tensor_v2` calls over float storages); tensor bytes stream to the file one
//! tensor at a time.

use std::io::Write;
use std::path::Path;

use zip::write::SimpleFileOptions;

use crate::error::{Result, VarError};
use crate::weights::safetensors::NamedTensor;

/// A tensor view for [`Pickle::tensor`]: storage offset, shape, strides.
pub type View<'a> = (i32, &'a [i32], &'a [i32]);

/// A protocol-2 pickle assembled opcode by opcode.
pub struct Pickle(Vec<u8>);

impl Default for Pickle {
    fn default() -> Self {
        Self::new()
    }
}

impl Pickle {
    pub fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    /// Raw opcodes.
    pub fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// BINUNICODE.
    pub fn s(self, text: &str) -> Self {
        let len = (text.len() as u32).to_le_bytes();
        self.op(b"X").op(&len).op(text.as_bytes())
    }
    /// BININT.
    pub fn int(self, v: i32) -> Self {
        self.op(b"J").op(&v.to_le_bytes())
    }
    /// GLOBAL `module.name`.
    pub fn global(self, module: &str, name: &str) -> Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    /// A tuple of ints.
    pub fn ints(self, values: &[i32]) -> Self {
        values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
    }
    /// `OrderedDict()` via REDUCE, as torch pickles one.
    pub fn odict(self) -> Self {
        self.global("collections", "OrderedDict").op(b")R")
    }
    /// `_rebuild_tensor_v2` of a view over `numel` elements of storage `key` of `class`.
    pub fn tensor(self, class: &str, key: &str, numel: i32, (offset, shape, stride): View) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .s("storage")
            .global("torch", class)
            .s(key)
            .s("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .ints(shape)
            .ints(stride)
            .op(&[0x89])
            .odict()
            .op(b"tR")
    }
    /// STOP, and the bytes.
    pub fn done(self) -> Vec<u8> {
        self.op(b".").0
    }
    /// The bytes so far, without STOP (for truncated or malformed pickles in tests).
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Writes `tensors` (f32, contiguous) as a `torch.save` state dict at `path`, atomically
/// (a temporary sibling renamed into place).
pub fn write_state_dict(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let int = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| {
            VarError::InvalidArgument(format!("{what} {v} does not fit a checkpoint's int32"))
        })
    };
    let mut pickle = Pickle::new().odict().op(b"(");
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        let dims = shape
            .iter()
            .map(|&d| int(d, "dimension"))
            .collect::<Result<Vec<_>>>()?;
        let mut strides = vec![1i32; dims.len()];
        for d in (0..dims.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * dims[d + 1];
        }
        let numel = int(values.len(), "tensor size")?;
        pickle = pickle
            .s(name)
            .tensor("FloatStorage", &i.to_string(), numel, (0, &dims, &strides));
    }
    let pickle = pickle.op(b"u").done();

    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    crate::files::write_atomically_with(path, |out| {
        let io = |e: std::io::Error| VarError::io(path, e);
        let zip_err = |e: zip::result::ZipError| VarError::io(path, std::io::Error::other(e));
        let mut zip = zip::ZipWriter::new(out);
        // torch stores entries uncompressed, so storages can be memory-mapped.
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        let mut entry = |name: String, bytes: &[u8]| -> Result<()> {
            zip.start_file(name, opts).map_err(zip_err)?;
            zip.write_all(bytes).map_err(io)
        };
        entry(format!("{stem}/data.pkl"), &pickle)?;
        entry(format!("{stem}/byteorder"), b"little")?;
        for (i, (_, _, values)) in tensors.iter().enumerate() {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            entry(format!("{stem}/data/{i}"), &bytes)?;
        }
        entry(format!("{stem}/version"), b"3\n")?;
        zip.finish().map_err(zip_err)?;
        Ok(())
    })
}
