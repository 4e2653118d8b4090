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
//! What is guaranteed for any input (fuzzed by the `pth_container` and `pickle` targets,
//! `docs/bad-input.md`):
//! - no panic, and nothing imported or called outside the state-dict allow-list;
//! - every length, index, offset, stride and product taken from the file is checked
//!   arithmetic, in every build profile;
//! - memory: only stored (uncompressed) entries are read, as torch.save writes them, so
//!   nothing inflates; the pickle is read whole only up to 64 MiB, and its machine holds at
//!   most 1M stack and memo entries and 4M objects of 32 bytes, and builds views and a table of
//!   at most 16 bytes per pickle byte plus 64 KiB; a tensor read allocates the bytes its view
//!   spans (checked against its storage entry's size before reading) and its values, expanded
//!   to at most 2^24 elements for a broadcast view. Nothing else grows with the input. The
//!   fuzz targets hold every input to 64 bytes per input byte plus 129 MiB of peak heap.
//!
//! The reader is four parts, each in its own file: [`zip`] opens the archive and checks
//! every storage entry against the tensors that use it, [`pickle`] runs `data.pkl` on a
//! restricted machine that yields the tensor table, [`tensor`] has the dtypes and views
//! and turns storage bytes into values, and [`error`] says what went wrong. This file holds
//! [`PthFile`], the reader's public face.

mod error;
mod pickle;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests;
pub mod ranged;
pub mod source;
mod tensor;
#[cfg(test)]
mod testing;
pub mod write;
mod zip;

use std::collections::HashMap;
use std::fmt;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::Mutex;

// `::zip` is the crate, `self::zip` this module's `zip.rs`: the name is both here.
use ::zip::ZipArchive;
use half::{bf16, f16};

use self::zip::ReadSeek;
pub use error::PthError;
use tensor::gather;
pub use tensor::{DType, PthTensor};

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

impl PthFile {
    /// Parses an in-memory checkpoint (e.g. one fetched by a browser).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PthError> {
        Self::from_reader(Box::new(Cursor::new(bytes)))
    }

    /// Opens a checkpoint read by ranges (see [`ranged`]): from a server or a browser's
    /// `File`, fetching the tensor table first and each tensor's bytes when it is read.
    pub fn from_ranges<S: ranged::RangeSource + 'static>(
        source: S,
        window_bytes: usize,
    ) -> Result<Self, PthError> {
        Self::from_reader(Box::new(ranged::Windowed::new(source, window_bytes)))
    }

    /// Opens a checkpoint on disk without loading its tensor data.
    pub fn open(path: &Path) -> Result<Self, PthError> {
        let path_err = |source| PthError::Open {
            path: path.display().to_string(),
            source,
        };
        // A regular file only: a FIFO or device would block or never end.
        let (file, _) = crate::files::open_regular(path).map_err(path_err)?;
        Self::from_reader(Box::new(BufReader::new(file)))
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
}

#[cfg(test)]
mod tests {
    use super::testing::FIXTURES;
    use super::*;

    fn fixture(name: &str) -> PthFile {
        PthFile::open(&Path::new(FIXTURES).join(name)).unwrap()
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
}
