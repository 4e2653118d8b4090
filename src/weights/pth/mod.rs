//! Reader for PyTorch `torch.save` checkpoints that hold a state dict.
//!
//! A `.pth` file is a zip archive: `<prefix>/data.pkl` is a pickle that describes
//! the dict, and `<prefix>/data/<key>` holds the raw little-endian bytes of each
//! storage. Python's pickle is a program for a stack machine that may import and
//! call anything, so unpickling an untrusted checkpoint executes its code. This
//! module instead interprets only the opcodes a state dict needs, resolves
//! globals against a fixed allow-list, and never calls anything: "calling"
//! `_rebuild_tensor_v2` just records the tensor's storage, offset, shape and
//! strides. Tensor bytes are read lazily, one tensor at a time, so a 1 GB
//! checkpoint opened from disk is never held in memory as a whole.
//!
//! Every length, index and product taken from the file is checked before use:
//! no input can make this module panic or allocate more than the file justifies.

pub mod source;
pub mod write;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use half::{bf16, f16};
use zip::ZipArchive;
use zip::result::ZipError;

/// Official VAR pickles are well under 1 MiB; anything far larger is not a state dict.
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Caps on the VM's data structures so a hostile pickle cannot exhaust memory.
const MAX_OBJECTS: usize = 1 << 22;
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 20;
const MAX_NDIM: usize = 64;
const MAX_GLOBAL_LEN: usize = 256;
/// A view whose strides repeat elements (a saved `expand()`) yields more values
/// than its storage holds, so the storage no longer bounds the output buffer;
/// such views get a fixed cap instead (1 GiB of f32).
const MAX_BROADCAST_NUMEL: usize = 1 << 28;

/// Element type of a storage, as named by its `torch.<X>Storage` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element in the storage.
    pub fn itemsize(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

/// One tensor of the state dict: its metadata only, the values stay in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PthTensor {
    pub shape: Vec<usize>,
    pub dtype: DType,
    storage: String,
    storage_numel: usize,
    offset: usize,
    stride: Vec<usize>,
}

impl PthTensor {
    /// Number of elements; every shape is validated at load, so this cannot overflow.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn checked_numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Storage elements spanned from `offset` through the last element the view touches.
    fn checked_extent(&self) -> Option<usize> {
        if self.checked_numel()? == 0 {
            return Some(0);
        }
        let mut dims = self.shape.iter().zip(&self.stride);
        dims.try_fold(1usize, |e, (&d, &s)| e.checked_add((d - 1).checked_mul(s)?))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("could not read checkpoint {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("could not read the checkpoint: {0}")]
    Io(#[from] io::Error),
    #[error(
        "the checkpoint is not a zip archive (a PyTorch .pth saved with torch.save is one); \
         legacy non-zip checkpoints are not supported"
    )]
    NotZip,
    #[error("the checkpoint's zip archive is truncated or damaged: {0}")]
    Zip(String),
    #[error("could not read zip entry '{entry}': {source}")]
    EntryRead { entry: String, source: io::Error },
    #[error("the zip archive has no '<folder>/data.pkl' entry, so torch.save did not write it")]
    NoDataPkl,
    #[error("zip entry '{entry}' is larger than the {limit} bytes this reader accepts")]
    EntryTooLarge { entry: String, limit: u64 },
    #[error("'{entry}' says the storages are '{found}'-endian; only little-endian is supported")]
    ByteOrder { entry: String, found: String },
    #[error("data.pkl ends in the middle of the opcode at byte {pos}; the pickle is truncated")]
    PickleTruncated { pos: usize },
    #[error("unsupported pickle opcode {op:#04x} ('{name}') at byte {pos} of data.pkl")]
    UnsupportedOpcode {
        pos: usize,
        op: u8,
        name: &'static str,
    },
    #[error(
        "data.pkl references forbidden global '{name}' at byte {pos}; only torch storages, \
         _rebuild_tensor_v2, _rebuild_parameter and OrderedDict are allowed"
    )]
    ForbiddenGlobal { pos: usize, name: String },
    #[error("data.pkl is malformed at byte {pos}: {msg}")]
    PickleInvalid { pos: usize, msg: String },
    #[error("the checkpoint's top-level object is a {found}, not a dict of tensors")]
    NotADict { found: &'static str },
    #[error("the state dict has a key that is a {found}, not a string")]
    KeyNotString { found: &'static str },
    #[error("state-dict entry '{key}' is a {found}, not a tensor")]
    NotATensor { key: String, found: &'static str },
    #[error("tensor '{key}' has a shape or strides whose size overflows this reader's limits")]
    TensorTooLarge { key: String },
    #[error("tensor '{key}' reaches element {needed} of '{storage}', which holds only {available}")]
    StorageTooSmall {
        key: String,
        storage: String,
        needed: usize,
        available: usize,
    },
    #[error("tensor '{key}' uses storage entry '{entry}', which the archive does not contain")]
    MissingStorage { key: String, entry: String },
    #[error("storage entry '{entry}' holds {actual} bytes but its tensors need {needed}")]
    StorageEntryTooShort {
        entry: String,
        needed: u64,
        actual: u64,
    },
    #[error("the checkpoint has no tensor named '{0}'")]
    UnknownKey(String),
    #[error("tensor '{key}' has dtype {dtype:?}, which cannot be read as integers")]
    NotInteger { key: String, dtype: DType },
}

impl From<PthError> for crate::error::VarError {
    fn from(e: PthError) -> Self {
        crate::error::VarError::Format(Box::new(e))
    }
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A parsed checkpoint: the tensor table, plus the archive to read values from.
pub struct PthFile {
    /// `ZipArchive` needs `&mut` to read an entry; the mutex keeps reads `&self`.
    archive: Mutex<ZipArchive<Box<dyn ReadSeek>>>,
    tensors: Vec<(String, PthTensor)>,
    index: HashMap<String, usize>,
    /// Storage key -> (zip entry name, zip entry index).
    storages: HashMap<String, (String, usize)>,
}

impl fmt::Debug for PthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PthFile")
            .field("tensors", &self.tensors)
            .finish_non_exhaustive()
    }
}

fn zip_err(e: ZipError) -> PthError {
    match e {
        ZipError::Io(e) => PthError::Io(e),
        other => PthError::Zip(other.to_string()),
    }
}

impl PthFile {
    /// Parses an in-memory checkpoint (e.g. one fetched by a browser).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PthError> {
        Self::from_reader(Box::new(Cursor::new(bytes)))
    }

    /// Opens a checkpoint on disk without loading its tensor data.
    pub fn open(path: &Path) -> Result<Self, PthError> {
        let path_err = |source| PthError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(path_err)?;
        Self::from_reader(Box::new(BufReader::new(file)))
    }

    fn from_reader(mut reader: Box<dyn ReadSeek>) -> Result<Self, PthError> {
        // Legacy (pre-1.6) checkpoints are a bare pickle stream; recognise any
        // non-zip up front so the user gets that explanation, not a zip error.
        let mut magic = Vec::with_capacity(2);
        (&mut reader).take(2).read_to_end(&mut magic)?;
        reader.rewind()?;
        if magic != b"PK" {
            return Err(PthError::NotZip);
        }
        let mut archive = ZipArchive::new(reader).map_err(zip_err)?;
        // torch writes every entry under one folder whose name varies (`archive`,
        // the file stem, ...); like torch, use the first data.pkl in the directory.
        let (pkl_name, prefix) = archive
            .file_names()
            .filter_map(|n| Some((n, n.strip_suffix("data.pkl")?)))
            .find(|(_, p)| p.is_empty() || p.find('/') == Some(p.len() - 1))
            .map(|(n, p)| (n.to_owned(), p.to_owned()))
            .ok_or(PthError::NoDataPkl)?;

        let order_name = format!("{prefix}byteorder");
        if archive.index_for_name(&order_name).is_some() {
            let order = read_entry(&mut archive, &order_name, 64)?;
            let found = String::from_utf8_lossy(&order).trim().to_owned();
            if found != "little" {
                return Err(PthError::ByteOrder {
                    entry: order_name,
                    found,
                });
            }
        }

        let pickle = read_entry(&mut archive, &pkl_name, MAX_PICKLE_BYTES)?;
        let tensors = Machine::new(&pickle).run()?;

        let mut storages = HashMap::new();
        for (key, t) in &tensors {
            let too_large = || PthError::TensorTooLarge { key: key.clone() };
            let numel = t.checked_numel().ok_or_else(too_large)?;
            let extent = t.checked_extent().ok_or_else(too_large)?;
            if numel > extent && numel > MAX_BROADCAST_NUMEL {
                return Err(too_large());
            }
            let (key, entry) = (key.clone(), format!("{prefix}data/{}", t.storage));
            let needed = t.offset.checked_add(extent).ok_or_else(too_large)?;
            if needed > t.storage_numel {
                let (storage, available) = (entry, t.storage_numel);
                return Err(PthError::StorageTooSmall {
                    key,
                    storage,
                    needed,
                    available,
                });
            }
            let Some(idx) = archive.index_for_name(&entry) else {
                return Err(PthError::MissingStorage { key, entry });
            };
            let actual = archive.by_index_raw(idx).map_err(zip_err)?.size();
            let needed = u64::try_from(t.storage_numel)
                .ok()
                .and_then(|n| n.checked_mul(t.dtype.itemsize() as u64))
                .ok_or(PthError::TensorTooLarge { key })?;
            if actual < needed {
                return Err(PthError::StorageEntryTooShort {
                    entry,
                    needed,
                    actual,
                });
            }
            storages.insert(t.storage.clone(), (entry, idx));
        }
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let archive = Mutex::new(archive);
        Ok(Self {
            archive,
            tensors,
            index,
            storages,
        })
    }

    /// Tensor names in the order the file lists them.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(k, _)| k.as_str())
    }

    /// Names and metadata of all tensors, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &PthTensor)> {
        self.tensors.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// Shape and dtype of one tensor, without reading its values.
    pub fn get(&self, key: &str) -> Option<&PthTensor> {
        self.index
            .get(key)
            .and_then(|&i| self.tensors.get(i))
            .map(|(_, t)| t)
    }

    /// The tensor's values converted to f32 in row-major (C) order of its shape,
    /// honouring storage_offset and arbitrary strides (views/transposes);
    /// f16/bf16/f64 converted, integer dtypes converted too.
    pub fn read_f32(&self, key: &str) -> Result<Vec<f32>, PthError> {
        let (t, bytes, entry) = self.read_raw(key)?;
        match t.dtype {
            DType::F64 => gather(t, &bytes, entry, |b| f64::from_le_bytes(b) as f32),
            DType::F32 => gather(t, &bytes, entry, f32::from_le_bytes),
            DType::F16 => gather(t, &bytes, entry, |b| f16::from_le_bytes(b).to_f32()),
            DType::BF16 => gather(t, &bytes, entry, |b| bf16::from_le_bytes(b).to_f32()),
            DType::I64 => gather(t, &bytes, entry, |b| i64::from_le_bytes(b) as f32),
            DType::I32 => gather(t, &bytes, entry, |b| i32::from_le_bytes(b) as f32),
            DType::I16 => gather(t, &bytes, entry, |b| f32::from(i16::from_le_bytes(b))),
            DType::I8 => gather(t, &bytes, entry, |[b]| f32::from(b as i8)),
            DType::U8 => gather(t, &bytes, entry, |[b]| f32::from(b)),
            DType::Bool => gather(t, &bytes, entry, |[b]| f32::from(u8::from(b != 0))),
        }
    }

    /// The values of an integer (or bool) tensor, e.g. an int64 buffer, in row-major order.
    pub fn read_i64(&self, key: &str) -> Result<Vec<i64>, PthError> {
        let (t, bytes, entry) = self.read_raw(key)?;
        match t.dtype {
            DType::I64 => gather(t, &bytes, entry, i64::from_le_bytes),
            DType::I32 => gather(t, &bytes, entry, |b| i64::from(i32::from_le_bytes(b))),
            DType::I16 => gather(t, &bytes, entry, |b| i64::from(i16::from_le_bytes(b))),
            DType::I8 => gather(t, &bytes, entry, |[b]| i64::from(b as i8)),
            DType::U8 => gather(t, &bytes, entry, |[b]| i64::from(b)),
            DType::Bool => gather(t, &bytes, entry, |[b]| i64::from(b != 0)),
            dtype => Err(PthError::NotInteger {
                key: key.to_owned(),
                dtype,
            }),
        }
    }

    /// Reads just the storage bytes the view spans, starting at its offset.
    fn read_raw(&self, key: &str) -> Result<(&PthTensor, Vec<u8>, &str), PthError> {
        let unknown = || PthError::UnknownKey(key.to_owned());
        let t = self.get(key).ok_or_else(unknown)?;
        let (entry, idx) = self.storages.get(&t.storage).ok_or_else(unknown)?;
        let too_large = || PthError::TensorTooLarge {
            key: key.to_owned(),
        };
        let size = t.dtype.itemsize() as u64;
        let extent = t.checked_extent().ok_or_else(too_large)? as u64;
        if extent == 0 {
            return Ok((t, Vec::new(), entry));
        }
        let skip = (t.offset as u64).checked_mul(size).ok_or_else(too_large)?;
        let len = extent.checked_mul(size).ok_or_else(too_large)?;
        let mut archive = self.archive.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = archive.by_index(*idx).map_err(zip_err)?;
        let read_err = |source| PthError::EntryRead {
            entry: entry.clone(),
            source,
        };
        let skipped = io::copy(&mut (&mut file).take(skip), &mut io::sink()).map_err(read_err)?;
        // Grow the buffer as bytes arrive: a compressed entry's declared size may lie.
        let mut bytes = Vec::with_capacity(usize::try_from(len.min(64 << 20)).unwrap_or(0));
        file.take(len).read_to_end(&mut bytes).map_err(read_err)?;
        if skipped < skip || (bytes.len() as u64) < len {
            let (entry, needed) = (entry.clone(), skip + len);
            let actual = skipped + bytes.len() as u64;
            return Err(PthError::StorageEntryTooShort {
                entry,
                needed,
                actual,
            });
        }
        Ok((t, bytes, entry))
    }
}

fn read_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, PthError> {
    let too_large = || PthError::EntryTooLarge {
        entry: name.to_owned(),
        limit,
    };
    let file = archive.by_name(name).map_err(zip_err)?;
    if file.size() > limit {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    let read_err = |source| PthError::EntryRead {
        entry: name.to_owned(),
        source,
    };
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
}

/// Walks the view in row-major order. `bytes` starts at the view's storage
/// offset and covers its extent (checked by `read_raw`), yet every access is
/// still bounds-checked so a logic slip becomes an error, not a panic.
fn gather<T, const N: usize>(
    t: &PthTensor,
    bytes: &[u8],
    entry: &str,
    conv: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, PthError> {
    let (elems, _) = bytes.as_chunks::<N>();
    let numel = t.numel();
    let short = || PthError::StorageEntryTooShort {
        entry: entry.to_owned(),
        needed: (numel as u64).saturating_mul(N as u64),
        actual: bytes.len() as u64,
    };
    // Strides of length-1 dims never move the position; zeroing them lets
    // the contiguity test below ignore them (torch leaves them arbitrary).
    let shape = &t.shape;
    let stride: Vec<usize> = shape
        .iter()
        .zip(&t.stride)
        .map(|(&d, &s)| if d == 1 { 0 } else { s })
        .collect();
    let mut expected = 1usize;
    let mut contiguous = true;
    for (&d, &s) in shape.iter().zip(&stride).rev() {
        contiguous &= d == 1 || s == expected;
        expected = expected.saturating_mul(d);
    }
    if contiguous {
        let elems = elems.get(..numel).ok_or_else(short)?;
        return Ok(elems.iter().map(|&b| conv(b)).collect());
    }
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; shape.len()];
    let mut pos = 0usize;
    for _ in 0..numel {
        out.push(conv(*elems.get(pos).ok_or_else(short)?));
        // Odometer step. Wrapping arithmetic is exact: the true position always
        // lies inside the validated extent, so any wrap-around cancels out.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            pos = pos.wrapping_add(stride[d]);
            if index[d] < shape[d] {
                break;
            }
            pos = pos.wrapping_sub(stride[d].wrapping_mul(shape[d]));
            index[d] = 0;
        }
    }
    Ok(out)
}

type Id = usize;

/// The only callables the VM knows; resolving a global yields one of these or an error.
#[derive(Debug, Clone, Copy)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

/// Pickle values live in an arena and refer to each other by index. That gives
/// Python's shared-reference semantics (a memoized dict filled in later)
/// without `Rc` cycles, and without recursive drops that a deeply nested
/// hostile pickle could use to overflow the stack.
#[derive(Debug)]
enum Obj {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage {
        key: String,
        dtype: DType,
        numel: usize,
    },
    Tensor(PthTensor),
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool => "bool",
            Obj::Int(_) => "int",
            Obj::Float => "float",
            Obj::Str(_) => "string",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Global(_) => "global",
            Obj::Storage { .. } => "storage",
            Obj::Tensor(_) => "tensor",
        }
    }
}

#[derive(Default)]
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    objs: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }

    fn truncated(&self) -> PthError {
        PthError::PickleTruncated { pos: self.op_pos }
    }

    fn invalid(&self, msg: impl Into<String>) -> PthError {
        PthError::PickleInvalid {
            pos: self.op_pos,
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], PthError> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let n = usize::try_from(n).map_err(|_| self.truncated())?;
        let bytes = rest.get(..n).ok_or_else(|| self.truncated())?;
        self.pos += n;
        Ok(bytes)
    }

    /// A little-endian unsigned integer of `width` (at most 8) bytes.
    fn uint(&mut self, width: u64) -> Result<u64, PthError> {
        let bytes = self.take(width)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// BININT/BININT1/BININT2/LONG1: little-endian, optionally two's complement.
    fn int(&mut self, width: u64, signed: bool) -> Result<(), PthError> {
        if width > 8 {
            return Err(self.invalid("LONG1 integer does not fit in 64 bits"));
        }
        let value = self.uint(width)?;
        let unused = 64 - 8 * width as u32;
        let value = match (signed, width) {
            (_, 0) => 0,
            (true, _) => ((value << unused) as i64) >> unused,
            (false, _) => value as i64,
        };
        self.push_new(Obj::Int(value))
    }

    /// Any string opcode whose length prefix is `width` bytes. A negative
    /// BINSTRING length reads as a huge one and so reports truncation.
    fn string(&mut self, width: u64) -> Result<(), PthError> {
        let len = self.uint(width)?;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.invalid("string is not UTF-8"))?;
        self.push_new(Obj::Str(s.to_owned()))
    }

    /// One newline-terminated line of a GLOBAL opcode.
    fn line(&mut self) -> Result<&'a str, PthError> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let window = rest.get(..=MAX_GLOBAL_LEN).unwrap_or(rest);
        let Some(n) = window.iter().position(|&b| b == b'\n') else {
            return Err(match window.len() == rest.len() {
                true => self.truncated(),
                false => self.invalid("GLOBAL name is longer than 256 bytes"),
            });
        };
        self.pos += n + 1;
        let line = window.get(..n).unwrap_or_default();
        std::str::from_utf8(line).map_err(|_| self.invalid("GLOBAL name is not UTF-8"))
    }

    fn push(&mut self, id: Id) -> Result<(), PthError> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.invalid(format!("the stack grows beyond {MAX_STACK} entries")));
        }
        self.stack.push(id);
        Ok(())
    }

    fn alloc(&mut self, obj: Obj) -> Result<Id, PthError> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(self.invalid(format!("the pickle builds over {MAX_OBJECTS} objects")));
        }
        self.objs.push(obj);
        Ok(self.objs.len() - 1)
    }

    fn push_new(&mut self, obj: Obj) -> Result<(), PthError> {
        let id = self.alloc(obj)?;
        self.push(id)
    }

    fn obj(&self, id: Id) -> &Obj {
        // Ids only come from `alloc`, so they are always in range.
        &self.objs[id]
    }

    /// Values below the innermost MARK belong to the enclosing level, as in CPython.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Pops `n` values, or everything down to the innermost MARK when `n` is None.
    fn pop_n(&mut self, n: Option<usize>) -> Result<Vec<Id>, PthError> {
        let from = match n {
            Some(n) => self
                .stack
                .len()
                .checked_sub(n)
                .filter(|&f| f >= self.floor()),
            None => self.marks.pop().filter(|&m| m <= self.stack.len()),
        };
        let from = from.ok_or_else(|| self.invalid("stack underflow (or a missing MARK)"))?;
        Ok(self.stack.split_off(from))
    }

    fn pop(&mut self) -> Result<Id, PthError> {
        Ok(self.pop_n(Some(1))?.first().copied().unwrap_or_default())
    }

    fn peek(&self) -> Result<Id, PthError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.floor() => Ok(id),
            _ => Err(self.invalid("stack underflow")),
        }
    }

    /// BINPUT/LONG_BINPUT read a slot number of `width` bytes; MEMOIZE (None) takes the next.
    fn memo_put(&mut self, width: Option<u64>) -> Result<(), PthError> {
        let slot = match width {
            Some(width) => self.uint(width)? as u32,
            None => u32::try_from(self.memo.len()).unwrap_or(u32::MAX),
        };
        let id = self.peek()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&slot) {
            return Err(self.invalid(format!("the memo grows beyond {MAX_MEMO} entries")));
        }
        self.memo.insert(slot, id);
        Ok(())
    }

    fn memo_get(&mut self, width: u64) -> Result<(), PthError> {
        let slot = self.uint(width)?;
        let id = self.memo.get(&(slot as u32)).copied();
        let id = id.ok_or_else(|| self.invalid(format!("memo slot {slot} is read before set")))?;
        self.push(id)
    }

    fn str_of(&self, id: Id, what: &str) -> Result<&str, PthError> {
        match self.obj(id) {
            Obj::Str(s) => Ok(s),
            other => Err(self.invalid(format!("{what} is a {}, not a string", other.kind()))),
        }
    }

    fn usize_of(&self, id: Id, what: &str) -> Result<usize, PthError> {
        match self.obj(id) {
            Obj::Int(i) => usize::try_from(*i).map_err(|_| self.invalid(format!("{what} is {i}"))),
            other => Err(self.invalid(format!("{what} is a {}, not an int", other.kind()))),
        }
    }

    fn dims(&self, id: Id, what: &str) -> Result<Vec<usize>, PthError> {
        match self.obj(id) {
            Obj::Tuple(items) if items.len() <= MAX_NDIM => {
                items.iter().map(|&i| self.usize_of(i, what)).collect()
            }
            other => Err(self.invalid(format!("tensor {what} is a {} of rank > 64", other.kind()))),
        }
    }

    /// GLOBAL and STACK_GLOBAL: the allow-list is the whole security boundary.
    fn global(&mut self, module: &str, name: &str) -> Result<(), PthError> {
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
    fn persistent_load(&mut self) -> Result<(), PthError> {
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
        self.push_new(Obj::Storage { key, dtype, numel })
    }

    /// REDUCE and NEWOBJ "call" an allow-listed global by building what it would return.
    fn reduce(&mut self, newobj: bool) -> Result<(), PthError> {
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
                self.alloc(Obj::Tensor(tensor))?
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
        let Obj::Storage { key, dtype, numel } = self.obj(storage) else {
            let found = self.obj(storage).kind();
            return Err(self.invalid(format!("_rebuild_tensor_v2's storage is a {found}")));
        };
        let (shape, stride) = (self.dims(size, "size")?, self.dims(stride, "stride")?);
        if shape.len() != stride.len() {
            return Err(self.invalid("tensor size and stride have different lengths"));
        }
        let (storage, storage_numel, dtype) = (key.clone(), *numel, *dtype);
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

    /// SETITEM(S), APPEND(S), BUILD: mutate the container just below the popped values.
    fn update(&mut self, op: u8, items: Vec<Id>) -> Result<(), PthError> {
        let target = self.peek()?;
        let (pairs, _) = items.as_chunks::<2>();
        let state_kind = items.first().map(|&s| self.obj(s).kind());
        match (op, &mut self.objs[target]) {
            (b's' | b'u', Obj::Dict(dict)) if items.len().is_multiple_of(2) => {
                dict.extend(pairs.iter().map(|&[k, v]| (k, v)));
            }
            (b'a' | b'e', Obj::List(list)) => list.extend(items),
            // torch sets the state dict's `_metadata` attribute this way; it only
            // matters to `load_state_dict` versioning, so the state is ignored.
            (b'b', Obj::Dict(_)) if matches!(state_kind, Some("dict" | "None")) => {}
            (_, target) => {
                let (op, target, n) = (op as char, target.kind(), items.len());
                let what = format!("opcode '{op}' cannot apply {n} value(s) to a {target}");
                return Err(self.invalid(what));
            }
        }
        Ok(())
    }

    fn run(mut self) -> Result<Vec<(String, PthTensor)>, PthError> {
        loop {
            self.op_pos = self.pos;
            let op = self.uint(1)? as u8;
            match op {
                0x80 => {
                    let version = self.uint(1)?;
                    if version > 5 {
                        return Err(self.invalid(format!("pickle protocol {version} is unknown")));
                    }
                }
                // FRAME only announces how many bytes the next opcodes take.
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.finish(),
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(self.invalid("too many open MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'}' => self.push_new(Obj::Dict(Vec::new()))?,
                b')' => self.push_new(Obj::Tuple(Vec::new()))?,
                b']' => self.push_new(Obj::List(Vec::new()))?,
                b't' | 0x85..=0x87 => {
                    let n = (op != b't').then(|| usize::from(op - 0x84));
                    let items = self.pop_n(n)?;
                    self.push_new(Obj::Tuple(items))?;
                }
                b'd' => {
                    let items = self.pop_n(None)?;
                    self.push_new(Obj::Dict(Vec::new()))?;
                    self.update(b's', items)?;
                }
                b'l' => {
                    let items = self.pop_n(None)?;
                    self.push_new(Obj::List(items))?;
                }
                b'X' | b'T' => self.string(4)?,
                0x8c | b'U' => self.string(1)?,
                0x8d => self.string(8)?,
                b'J' => self.int(4, true)?,
                b'K' => self.int(1, false)?,
                b'M' => self.int(2, false)?,
                0x8a => {
                    let width = self.uint(1)?;
                    self.int(width, true)?;
                }
                b'G' => {
                    self.take(8)?;
                    self.push_new(Obj::Float)?;
                }
                b'N' => self.push_new(Obj::None)?,
                0x88 | 0x89 => self.push_new(Obj::Bool)?,
                b'q' => self.memo_put(Some(1))?,
                b'r' => self.memo_put(Some(4))?,
                0x94 => self.memo_put(None)?,
                b'h' => self.memo_get(1)?,
                b'j' => self.memo_get(4)?,
                b'c' => {
                    let (module, name) = (self.line()?, self.line()?);
                    self.global(module, name)?;
                }
                0x93 => {
                    let (name, module) = (self.pop()?, self.pop()?);
                    let module = self.str_of(module, "module")?.to_owned();
                    let name = self.str_of(name, "name")?.to_owned();
                    self.global(&module, &name)?;
                }
                b'Q' => self.persistent_load()?,
                b'R' | 0x81 => self.reduce(op == 0x81)?,
                b's' | b'a' | b'b' => {
                    let items = self.pop_n(Some(if op == b's' { 2 } else { 1 }))?;
                    self.update(op, items)?;
                }
                b'u' | b'e' => {
                    let items = self.pop_n(None)?;
                    self.update(op, items)?;
                }
                _ => {
                    let (pos, name) = (self.op_pos, opcode_name(op));
                    return Err(PthError::UnsupportedOpcode { pos, op, name });
                }
            }
        }
    }

    /// STOP: the result must be a dict of string -> tensor. A repeated key
    /// replaces the earlier value in place, as a Python dict does.
    fn finish(mut self) -> Result<Vec<(String, PthTensor)>, PthError> {
        let root = self.pop()?;
        let items = match std::mem::replace(&mut self.objs[root], Obj::None) {
            Obj::Dict(items) => items,
            other => {
                return Err(PthError::NotADict {
                    found: other.kind(),
                });
            }
        };
        let mut out: Vec<(String, PthTensor)> = Vec::with_capacity(items.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (k, v) in items {
            let Obj::Str(key) = self.obj(k) else {
                return Err(PthError::KeyNotString {
                    found: self.obj(k).kind(),
                });
            };
            let Obj::Tensor(tensor) = self.obj(v) else {
                let found = self.obj(v).kind();
                return Err(PthError::NotATensor {
                    key: key.clone(),
                    found,
                });
            };
            match seen.get(key.as_str()).and_then(|&i| out.get_mut(i)) {
                Some(slot) => slot.1 = tensor.clone(),
                None => {
                    seen.insert(key, out.len());
                    out.push((key.clone(), tensor.clone()));
                }
            }
        }
        Ok(out)
    }
}

/// Names for the opcodes this reader refuses, so the error says what was met.
#[rustfmt::skip]
const REFUSED_OPCODES: &[(u8, &str)] = &[
    (b'0', "POP"), (b'1', "POP_MARK"), (b'2', "DUP"), (b'F', "FLOAT"), (b'I', "INT"),
    (b'L', "LONG"), (b'P', "PERSID"), (b'S', "STRING"), (b'V', "UNICODE"), (b'g', "GET"),
    (b'i', "INST"), (b'o', "OBJ"), (b'p', "PUT"), (b'B', "BINBYTES"), (b'C', "SHORT_BINBYTES"),
    (0x82, "EXT1"), (0x83, "EXT2"), (0x84, "EXT4"), (0x8b, "LONG4"), (0x8e, "BINBYTES8"),
    (0x8f, "EMPTY_SET"), (0x90, "ADDITEMS"), (0x91, "FROZENSET"), (0x92, "NEWOBJ_EX"),
    (0x96, "BYTEARRAY8"), (0x97, "NEXT_BUFFER"), (0x98, "READONLY_BUFFER"),
];

fn opcode_name(op: u8) -> &'static str {
    REFUSED_OPCODES
        .iter()
        .find(|(o, _)| *o == op)
        .map_or("not a pickle opcode", |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

    fn fixture(name: &str) -> PthFile {
        PthFile::open(&Path::new(FIXTURES).join(name)).unwrap()
    }

    use super::write::{Pickle as P, View};

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn le<const N: usize>(values: impl IntoIterator<Item = [u8; N]>) -> Vec<u8> {
        values.into_iter().flatten().collect()
    }

    fn with_storage(pickle: &[u8], storage: &[u8]) -> Result<PthFile, PthError> {
        PthFile::from_bytes(zip_of(&[
            ("archive/data.pkl", pickle),
            ("archive/data/0", storage),
        ]))
    }

    /// `{'w': <tensor>}` whose storage '0' holds `storage`.
    fn one(class: &str, numel: i32, view: View, storage: &[u8]) -> Result<PthFile, PthError> {
        let pickle = P::new()
            .odict()
            .s("w")
            .tensor(class, "0", numel, view)
            .op(b"s")
            .done();
        with_storage(&pickle, storage)
    }

    fn pickle_err(pickle: &[u8]) -> PthError {
        with_storage(pickle, &[0; 64]).unwrap_err()
    }

    #[test]
    fn vae_tiny_fixture() {
        let f = fixture("vae_tiny.pth");
        assert_eq!(f.keys().count(), 324);
        assert_eq!(f.keys().next(), Some("encoder.conv_in.weight"));
        assert_eq!(
            f.get("encoder.conv_in.weight").unwrap().shape,
            [32, 3, 3, 3]
        );
        let emb = f.get("quantize.embedding.weight").unwrap();
        assert_eq!(
            (emb.shape.as_slice(), emb.dtype),
            (&[64, 8][..], DType::F32)
        );
        let values = f.read_f32("quantize.embedding.weight").unwrap();
        assert_eq!(values.len(), 512);
        assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn var_tiny_fixture() {
        let f = fixture("var_tiny.pth");
        assert_eq!(f.get("pos_1LC").unwrap().shape, [1, 680, 128]);
        assert_eq!(f.get("class_emb.weight").unwrap().shape, [11, 128]);
        assert_eq!(f.read_f32("pos_1LC").unwrap().len(), 680 * 128);
        // A size-1 dim with a non-standard stride (128, 128, 1) is still contiguous.
        assert_eq!(f.read_f32("pos_start").unwrap().len(), 128);
        let lvl = f.get("lvl_1L").unwrap();
        assert_eq!(
            (lvl.shape.as_slice(), lvl.dtype),
            (&[1, 680][..], DType::I64)
        );
        let patch_nums = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16];
        let scale_ids = (0i64..)
            .zip(patch_nums)
            .flat_map(|(i, pn)| std::iter::repeat_n(i, pn * pn));
        assert_eq!(f.read_i64("lvl_1L").unwrap(), scale_ids.collect::<Vec<_>>());
        assert_eq!(f.read_f32("lvl_1L").unwrap()[679], 9.0);
        assert!(matches!(
            f.read_i64("pos_1LC"),
            Err(PthError::NotInteger { .. })
        ));
        assert!(matches!(f.read_f32("nope"), Err(PthError::UnknownKey(_))));
    }

    #[test]
    fn var_mini_fixture() {
        let f = fixture("var_mini.pth");
        assert_eq!(f.get("pos_1LC").unwrap().shape, [1, 30, 128]);
        let scale_ids = (0i64..4).flat_map(|i| std::iter::repeat_n(i, (i as usize + 1).pow(2)));
        assert_eq!(f.read_i64("lvl_1L").unwrap(), scale_ids.collect::<Vec<_>>());
    }

    #[test]
    fn strided_views_and_dtypes() {
        let storage = le([0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0].map(f32::to_le_bytes));
        let read = |view: View| one("FloatStorage", 6, view, &storage)?.read_f32("w");
        // A (2, 3) tensor saved transposed: shape (3, 2), strides (1, 3).
        assert_eq!(
            read((0, &[3, 2], &[1, 3])).unwrap(),
            [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        assert_eq!(read((1, &[2], &[2])).unwrap(), [1.0, 3.0]);
        assert_eq!(read((5, &[2, 2], &[0, 0])).unwrap(), [5.0; 4]);
        assert_eq!(read((4, &[], &[])).unwrap(), [4.0]);
        assert!(read((0, &[0, 3], &[3, 1])).unwrap().is_empty());

        let half = le([1.5f32, -2.0].map(|v| f16::from_f32(v).to_le_bytes()));
        let f = one("HalfStorage", 2, (0, &[2], &[1]), &half).unwrap();
        assert_eq!(f.read_f32("w").unwrap(), [1.5, -2.0]);
        let bf = le([0.25f32, 3.0].map(|v| bf16::from_f32(v).to_le_bytes()));
        let f = one("BFloat16Storage", 2, (0, &[2], &[1]), &bf).unwrap();
        assert_eq!(f.read_f32("w").unwrap(), [0.25, 3.0]);
        let long = le([7i64, -3, 9].map(i64::to_le_bytes));
        let f = one("LongStorage", 3, (0, &[3], &[1]), &long).unwrap();
        assert_eq!(
            (f.read_i64("w").unwrap(), f.read_f32("w").unwrap()),
            (vec![7, -3, 9], vec![7.0, -3.0, 9.0])
        );
    }

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
    fn rejects_non_zip_truncated_zip_and_missing_pickle() {
        let err = PthFile::open(Path::new("/nonexistent/x.pth")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("could not read checkpoint /nonexistent/x.pth")
        );
        let legacy = PthFile::from_bytes(vec![0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc]).unwrap_err();
        assert!(
            legacy
                .to_string()
                .contains("legacy non-zip checkpoints are not supported")
        );
        assert!(matches!(
            PthFile::from_bytes(Vec::new()),
            Err(PthError::NotZip)
        ));
        let good = std::fs::read(Path::new(FIXTURES).join("var_mini.pth")).unwrap();
        let cut = PthFile::from_bytes(good[..good.len() / 2].to_vec()).unwrap_err();
        assert!(matches!(cut, PthError::Zip(_)), "{cut}");
        let no_pkl = PthFile::from_bytes(zip_of(&[("archive/version", b"3\n")])).unwrap_err();
        assert!(matches!(no_pkl, PthError::NoDataPkl), "{no_pkl}");
        let big = zip_of(&[
            ("a/data.pkl", &P::new().odict().done()),
            ("a/byteorder", b"big"),
        ]);
        assert!(matches!(
            PthFile::from_bytes(big),
            Err(PthError::ByteOrder { .. })
        ));
    }

    #[test]
    fn rejects_truncated_pickles_at_every_length() {
        let full = P::new()
            .odict()
            .s("w")
            .tensor("FloatStorage", "0", 4, (0, &[4], &[1]))
            .op(b"s")
            .done();
        for len in 0..full.len() {
            let err = pickle_err(&full[..len]);
            assert!(
                matches!(err, PthError::PickleTruncated { .. }),
                "{len}: {err}"
            );
        }
        // A string header claiming 4 GiB must report truncation, not allocate.
        let lying = P::new().op(b"X\xff\xff\xff\xff").bytes();
        assert!(matches!(
            pickle_err(&lying),
            PthError::PickleTruncated { pos: 2 }
        ));
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

    #[test]
    fn rejects_unsupported_opcodes() {
        let err = pickle_err(&P::new().odict().op(b"(i__main__\nX\n").done());
        let msg = "unsupported pickle opcode 0x69 ('INST') at byte 30 of data.pkl";
        assert_eq!(err.to_string(), msg);
        let err = pickle_err(&P::new().odict().op(b"0").done());
        assert!(matches!(
            err,
            PthError::UnsupportedOpcode {
                op: b'0',
                name: "POP",
                ..
            }
        ));
    }

    #[test]
    fn rejects_values_that_are_not_tensors() {
        let err = pickle_err(&P::new().odict().s("step").int(3).op(b"s").done());
        assert!(matches!(&err, PthError::NotATensor { key, found: "int" } if key == "step"));
        let nested = P::new()
            .odict()
            .s("optimizer")
            .op(b"}")
            .s("lr")
            .int(1)
            .op(b"ss")
            .done();
        let msg = "state-dict entry 'optimizer' is a dict, not a tensor";
        assert_eq!(pickle_err(&nested).to_string(), msg);
        let err = pickle_err(&P::new().op(b"]").done());
        assert!(matches!(err, PthError::NotADict { found: "list" }), "{err}");
        let int_key = P::new()
            .odict()
            .int(1)
            .tensor("FloatStorage", "0", 1, (0, &[], &[]))
            .op(b"s");
        let err = pickle_err(&int_key.done());
        assert!(
            matches!(err, PthError::KeyNotString { found: "int" }),
            "{err}"
        );
    }

    #[test]
    fn rejects_missing_or_small_storages() {
        let pickle = P::new()
            .odict()
            .s("w")
            .tensor("FloatStorage", "0", 4, (0, &[4], &[1]))
            .op(b"s");
        let zip = zip_of(&[
            ("archive/data.pkl", &pickle.done()),
            ("archive/data/7", &[0; 16]),
        ]);
        let err = PthFile::from_bytes(zip).unwrap_err();
        assert!(
            matches!(&err, PthError::MissingStorage { entry, .. } if entry == "archive/data/0")
        );
        // Offset 1 plus strides (3, 1) over shape (2, 3) reach element 7 of 6.
        let err = one("FloatStorage", 6, (1, &[2, 3], &[3, 1]), &[0; 24]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor 'w' reaches element 7 of 'archive/data/0', which holds only 6"
        );
        let err = one("FloatStorage", 6, (0, &[6], &[1]), &[0; 20]).unwrap_err();
        assert!(matches!(
            err,
            PthError::StorageEntryTooShort {
                needed: 24,
                actual: 20,
                ..
            }
        ));
        let huge: &[i32] = &[i32::MAX, i32::MAX, i32::MAX];
        let err = one("FloatStorage", 6, (0, huge, &[1, 1, 1]), &[0; 24]).unwrap_err();
        assert!(matches!(err, PthError::TensorTooLarge { .. }), "{err}");
    }

    #[test]
    fn mutated_pickles_never_panic() {
        let base = P::new()
            .odict()
            .op(b"q\x00(")
            .s("w")
            .tensor("FloatStorage", "0", 4, (0, &[2, 2], &[1, 2]))
            .op(b"u}b")
            .done();
        let storage = le([0.0f32, 1.0, 2.0, 3.0].map(f32::to_le_bytes));
        let f = with_storage(&base, &storage).unwrap();
        assert_eq!(f.read_f32("w").unwrap(), [0.0, 2.0, 1.0, 3.0]);
        // Deterministic xorshift mutations: every outcome must be Ok or Err.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut bytes = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % bytes.len() as u64) as usize;
                bytes[i] = (state >> 32) as u8;
            }
            if let Ok(f) = with_storage(&bytes, &storage) {
                for key in f.keys() {
                    let _ = (f.read_f32(key), f.read_i64(key));
                }
            }
        }
    }
}
