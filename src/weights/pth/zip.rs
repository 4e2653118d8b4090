//! The zip container of a `torch.save` checkpoint: find `data.pkl` (under whichever folder
//! torch chose), check the byte order, read the pickle with a size cap, and match every
//! tensor against the storage entry it reads, so that a later read can only fail on I/O.
//! Reading one tensor's bytes ([`PthFile::read_raw`]) lives here too, since it is the only
//! other place that touches the archive.

use std::collections::HashMap;
use std::io::{self, Read, Seek};
use std::sync::{Mutex, PoisonError};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::pickle::Machine;
use super::tensor::MAX_BROADCAST_NUMEL;
use super::{PthError, PthFile, PthTensor};

/// Official VAR pickles are well under 1 MiB; anything far larger is not a state dict.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

pub(super) trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

fn zip_err(e: ZipError) -> PthError {
    match e {
        ZipError::Io(e) => PthError::Io(e),
        other => PthError::Zip(other.to_string()),
    }
}

// The constructor and the byte reader of `PthFile` (its public face is in `mod.rs`).
impl PthFile {
    pub(super) fn from_reader(mut reader: Box<dyn ReadSeek>) -> Result<Self, PthError> {
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
            let raw = archive.by_index_raw(idx).map_err(zip_err)?;
            stored_only(&raw, &entry)?;
            let actual = raw.size();
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

    /// Reads just the storage bytes the view spans, starting at its offset.
    pub(super) fn read_raw(&self, key: &str) -> Result<(&PthTensor, Vec<u8>, &str), PthError> {
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

/// torch.save never compresses an entry, so only stored entries are read: a deflated one
/// (inflating up to 1032x) would make memory follow the declared, not the actual, length.
fn stored_only(file: &zip::read::ZipFile<'_, impl Read>, entry: &str) -> Result<(), PthError> {
    match file.compression() {
        CompressionMethod::Stored => Ok(()),
        method => Err(PthError::Compressed {
            entry: entry.to_owned(),
            method: method.to_string(),
        }),
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
    let idx = archive
        .index_for_name(name)
        .ok_or_else(|| zip_err(ZipError::FileNotFound))?;
    stored_only(&archive.by_index_raw(idx).map_err(zip_err)?, name)?;
    let file = archive.by_index(idx).map_err(zip_err)?;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::weights::pth::testing::{FIXTURES, one, zip_of};
    use crate::weights::pth::write::Pickle as P;

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

    /// Marks the entry `name` of a stored zip as deflated (method 8) in its local and central
    /// headers, as a re-zipped checkpoint would say.
    fn mark_deflated(mut zip: Vec<u8>, name: &str) -> Vec<u8> {
        let headers = [(b"PK\x03\x04", 8, 30), (b"PK\x01\x02", 10, 46)];
        for (signature, method_at, name_at) in headers {
            let starts: Vec<usize> = (0..zip.len() - 4)
                .filter(|&i| &zip[i..i + 4] == signature)
                .filter(|&i| zip[i + name_at..].starts_with(name.as_bytes()))
                .collect();
            assert_eq!(starts.len(), 1, "one {signature:?} header for {name}");
            zip[starts[0] + method_at] = 8;
        }
        zip
    }

    #[test]
    fn compressed_pickles_and_storages_are_refused() {
        let pickle = P::new()
            .odict()
            .s("w")
            .tensor("FloatStorage", "0", 4, (0, &[4], &[1]))
            .op(b"s")
            .done();
        let entries = [
            ("archive/data.pkl", &pickle[..]),
            ("archive/data/0", &[0; 16][..]),
        ];
        assert!(PthFile::from_bytes(zip_of(&entries)).is_ok());
        for name in ["archive/data.pkl", "archive/data/0"] {
            let err = PthFile::from_bytes(mark_deflated(zip_of(&entries), name)).unwrap_err();
            assert!(
                matches!(&err, PthError::Compressed { entry, .. } if entry == name),
                "{name}: {err}"
            );
        }
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
}
