//! [`PthError`]: everything that can go wrong reading a checkpoint, each variant worded for
//! the user who handed us the file (which entry, which byte of the pickle, which tensor).

use std::io;

use super::DType;

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
    #[error(
        "zip entry '{entry}' is compressed ({method}); torch.save stores entries uncompressed, \
         and a compressed one could inflate past what the file's length justifies"
    )]
    Compressed { entry: String, method: String },
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
