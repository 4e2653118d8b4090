//! The crate's one error type. Every message is a sentence a person can act on; the CLI prints
//! it and exits non-zero, the web adapter turns it into a `JsError`.

use thiserror::Error;

/// Everything that can go wrong when loading, converting or running a model.
#[derive(Debug, Error)]
pub enum VarError {
    /// Files that are not the kind the caller asked for (a transformer given as the VQ-VAE).
    #[error("{0}")]
    WrongFile(String),
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A weight file lacks a tensor the model needs.
    #[error("the weights have no tensor '{key}' (needed with shape {shape:?})")]
    MissingTensor { key: String, shape: Vec<usize> },
    /// A tensor exists but has the wrong shape.
    #[error("tensor '{key}' has shape {found:?} but the model needs {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor holds NaN or an infinity: a model with one would only ever draw noise.
    #[error("tensor '{key}' holds a value that is not a finite number (NaN or infinity)")]
    NonFinite { key: String },
    /// Tensors were left over after the whole model was built: the file is not this model.
    #[error("the weights hold tensors this model does not use: {0}")]
    UnexpectedTensors(String),
    /// A user-supplied sampling or generation argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A file format's own reader refused its input (the `.pth` reader's `PthError`, ...).
    /// Boxed so that this bottom layer knows no format: each format converts into it.
    #[error(transparent)]
    Format(Box<dyn std::error::Error + Send + Sync>),
    /// Reading a named checkpoint file failed.
    #[error("{path}: {source}")]
    Checkpoint {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A shard of a sharded model does not match its manifest.
    #[error("model shard {file}: {message}")]
    Shard { file: String, message: String },
    /// A safetensors file is malformed.
    #[error("malformed safetensors file {file}: {message}")]
    Safetensors { file: String, message: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse or does not describe what it should.
    #[error("{path}: {message}")]
    Json { path: String, message: String },
    /// Reading a tensor back from the device failed.
    #[error("reading a tensor back from the device failed: {0}")]
    Device(String),
    /// The caller asked to stop between two scales.
    #[error("generation was cancelled")]
    Cancelled,
}

/// Shorthand used across the crate.
pub type Result<T, E = VarError> = std::result::Result<T, E>;

impl VarError {
    /// A stable name for the kind of failure, for callers that branch on it (the page reads it
    /// as a JavaScript `Error`'s `name`): `BadModel` (the files are not a model we can load),
    /// `InvalidArgument`, `Io`, `Device` or `Cancelled`.
    pub fn name(&self) -> &'static str {
        match self {
            VarError::Config(_)
            | VarError::WrongFile(_)
            | VarError::MissingTensor { .. }
            | VarError::ShapeMismatch { .. }
            | VarError::NonFinite { .. }
            | VarError::UnexpectedTensors(_)
            | VarError::Format(_)
            | VarError::Checkpoint { .. }
            | VarError::Shard { .. }
            | VarError::Safetensors { .. }
            | VarError::Json { .. } => "BadModel",
            VarError::InvalidArgument(_) => "InvalidArgument",
            VarError::Io { .. } => "Io",
            VarError::Device(_) => "Device",
            VarError::Cancelled => "Cancelled",
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        VarError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
