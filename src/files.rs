//! Writing files so that readers see the old contents or the new, never a torn file: the one
//! atomic writer of the crate (model files, checkpoints, pictures, logs, caches).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, VarError};

/// Writes `bytes` to `path` atomically (see [`write_atomically_with`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |out| {
        out.write_all(bytes).map_err(|e| VarError::io(path, e))
    })
}

/// Lets `write` fill a temporary file next to `path`, flushes it to the disk, then renames it
/// over `path`. The temporary file is in the same directory (a rename within one file system
/// is atomic) and is removed when anything fails, so an error leaves `path` as it was.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let tmp = partial_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| VarError::io(&tmp, e))?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| VarError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| VarError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| VarError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes `dir` hold exactly `files`, all or nothing: everything is written to a hidden sibling
/// directory first, which then takes the place of `dir` (a previous `dir` is moved aside and
/// removed only after the swap). A failure leaves `dir` as it was.
pub fn write_files_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    write_dir_atomically(dir, |tmp| {
        for (name, bytes) in files {
            let p = tmp.join(name);
            std::fs::write(&p, bytes).map_err(|e| VarError::io(&p, e))?;
        }
        Ok(())
    })
}

/// Lets `fill` write the files of `dir` into an empty hidden sibling directory, which then
/// takes the place of `dir` as [`write_files_atomically`] describes: for writers that produce
/// their files one at a time (a streamed conversion) and must not hold them all. A failure of
/// `fill` leaves `dir` as it was and removes the sibling.
pub fn write_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| VarError::io(parent, e))?;
    let leaf = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = parent.join(format!(".{leaf}.partial-{}", std::process::id()));
    let old: PathBuf = parent.join(format!(".{leaf}.old-{}", std::process::id()));
    let result = (|| {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| VarError::io(&tmp, e))?;
        fill(&tmp)?;
        let had_old = dir.exists();
        if had_old {
            std::fs::rename(dir, &old).map_err(|e| VarError::io(dir, e))?;
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            if had_old {
                let _ = std::fs::rename(&old, dir); // put the previous contents back
            }
            return Err(VarError::io(dir, e));
        }
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// `dir/.name.partial-PID`: hidden, and unique per process so two writers never share one.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

// tempfile is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomically(&path, b"old").unwrap();
        let failed = write_atomically_with(&path, |out| {
            out.write_all(b"half").unwrap();
            Err(VarError::InvalidArgument("stop".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file was left behind");
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
