//! Test helpers shared by the reader's files: checkpoints built in memory with
//! [`super::write::Pickle`], so each test states exactly the pickle it feeds the reader.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;

use super::write::{Pickle as P, View};
use super::{PthError, PthFile};

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

pub(super) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub(super) fn le<const N: usize>(values: impl IntoIterator<Item = [u8; N]>) -> Vec<u8> {
    values.into_iter().flatten().collect()
}

pub(super) fn with_storage(pickle: &[u8], storage: &[u8]) -> Result<PthFile, PthError> {
    PthFile::from_bytes(zip_of(&[
        ("archive/data.pkl", pickle),
        ("archive/data/0", storage),
    ]))
}

/// `{'w': <tensor>}` whose storage '0' holds `storage`.
pub(super) fn one(
    class: &str,
    numel: i32,
    view: View,
    storage: &[u8],
) -> Result<PthFile, PthError> {
    let pickle = P::new()
        .odict()
        .s("w")
        .tensor(class, "0", numel, view)
        .op(b"s")
        .done();
    with_storage(&pickle, storage)
}

pub(super) fn pickle_err(pickle: &[u8]) -> PthError {
    with_storage(pickle, &[0; 64]).unwrap_err()
}
