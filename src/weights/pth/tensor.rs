//! Tensors as the checkpoint describes them: [`DType`], the element type named by a
//! storage class, and [`PthTensor`], a strided view (offset, shape, strides) into one
//! storage. [`gather`] turns the bytes a view spans into its values in row-major order.

use super::PthError;

/// A view whose strides repeat elements (a saved `expand()`) yields more values
/// than its storage holds, so the storage no longer bounds the output buffer;
/// such views get a fixed cap instead: 2^24 elements, 64 MiB as f32 (128 MiB as i64). No
/// checkpoint we read has one (parameters are contiguous); the cap is above d24's largest
/// tensor (an AdaLN projection, 9216 x 1536 = 14.2M) and keeps one read of a hostile view
/// within the fuzz targets' per-input memory bound.
pub(super) const MAX_BROADCAST_NUMEL: usize = 1 << 24;

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

    pub(super) fn from_storage_class(name: &str) -> Option<Self> {
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
    pub(super) storage: String,
    pub(super) storage_numel: usize,
    pub(super) offset: usize,
    pub(super) stride: Vec<usize>,
}

impl PthTensor {
    /// Heap and inline bytes this view takes, as the pickle machine charges them.
    pub(super) fn built_size(&self) -> usize {
        let dims = (self.shape.len() + self.stride.len()) * size_of::<usize>();
        size_of::<Self>() + dims + self.storage.len()
    }

    /// Number of elements; every shape is validated at load, so this cannot overflow.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The bytes of the tensor's values in the file (its elements, not its whole storage).
    pub fn data_bytes(&self) -> u64 {
        (self.numel() as u64).saturating_mul(self.dtype.itemsize() as u64)
    }

    pub(super) fn checked_numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Storage elements spanned from `offset` through the last element the view touches.
    pub(super) fn checked_extent(&self) -> Option<usize> {
        if self.checked_numel()? == 0 {
            return Some(0);
        }
        let mut dims = self.shape.iter().zip(&self.stride);
        dims.try_fold(1usize, |e, (&d, &s)| e.checked_add((d - 1).checked_mul(s)?))
    }
}

/// Walks the view in row-major order. `bytes` starts at the view's storage
/// offset and covers its extent (checked by `read_raw`), yet every access is
/// still bounds-checked so a logic slip becomes an error, not a panic.
pub(super) fn gather<T, const N: usize>(
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

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use crate::weights::pth::testing::{le, one};
    use crate::weights::pth::write::View;

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
}
