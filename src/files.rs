//! Writing files so that a reader, or a run after a crash, finds the old contents or the new,
//! never a mix: the one writer of the crate (model directories, checkpoints, pictures, logs).
//!
//! - Every write goes to a temporary created exclusively (`O_EXCL`, by `tempfile`) under an
//!   unpredictable name in the target's own directory, so a file or symlink planted there is
//!   never followed, truncated or reused, and the final rename stays within one file system.
//! - The data is flushed to the disk before the rename, and the directory after it, so after a
//!   crash or power loss at any point the target is the previous version or the new one.
//! - A directory replaces another in one step: `renameat2(RENAME_EXCHANGE)` on Linux (and its
//!   macOS equivalent), where the file system offers it. Elsewhere the old directory is moved
//!   aside first, and a crash between the two renames is repaired by [`recover_dir`]: the next
//!   write or read of the directory puts the old version back.
//! - A temporary carries its writer's process id (`.NAME.PID.RANDOM.partial`); one that a crash
//!   left behind is removed by the next write beside it once that process is gone (Linux; on
//!   other systems such leftovers stay, hidden, and are never mistaken for the target).
//!
//! `tests/crash.rs` kills the writer at every step below ([`crash_point`]) and at random times,
//! and checks that a model directory and a training checkpoint are always the old or the new one.

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

/// Lets `write` fill a fresh temporary file next to `path`, flushes it to the disk, renames it
/// over `path` and flushes the directory. An error leaves `path` as it was and removes the
/// temporary; a crash leaves `path` as it was or complete.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let (parent, name) = split(path);
    remove_stale_temporaries(&parent, &name);
    // Dropping `tmp_path` (an error below) removes the temporary.
    let (file, tmp_path) = temporary(&temporary_prefix(&name), false)
        .tempfile_in(&parent)
        .map_err(|e| VarError::io(&parent, e))?
        .into_parts();
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| VarError::io(&tmp_path, e.into_error()))?;
    crash_point("file:written");
    file.sync_all().map_err(|e| VarError::io(&tmp_path, e))?;
    crash_point("file:synced");
    tmp_path
        .persist(path)
        .map_err(|e| VarError::io(path, e.error))?;
    crash_point("file:renamed");
    sync_dir(&parent)
}

/// Makes `dir` hold exactly `files`, all or nothing (see [`write_dir_atomically`]).
pub fn write_files_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    write_dir_atomically(dir, |tmp| {
        for (name, bytes) in files {
            let p = tmp.join(name);
            std::fs::write(&p, bytes).map_err(|e| VarError::io(&p, e))?;
        }
        Ok(())
    })
}

/// Lets `fill` write the files of `dir` into a fresh, empty hidden sibling directory, flushes
/// them to the disk, then puts the sibling in the place of `dir` in one step (a previous `dir`
/// is removed only after that). For writers that produce their files one at a time (a
/// streamed conversion) and must not hold them all. A failure of `fill` leaves `dir` as it was
/// and removes the sibling; a crash leaves `dir` as it was or complete.
pub fn write_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (parent, leaf) = split(dir);
    std::fs::create_dir_all(&parent).map_err(|e| VarError::io(&parent, e))?;
    recover_dir(dir)?;
    remove_stale_temporaries(&parent, &leaf);
    let tmp = temporary(&temporary_prefix(&leaf), true)
        .tempdir_in(&parent)
        .map_err(|e| VarError::io(&parent, e))?;
    // Dropping `tmp` (an error in `fill`, a failed swap) removes it and all it holds.
    fill(tmp.path())?;
    crash_point("dir:filled");
    sync_tree(tmp.path())?;
    crash_point("dir:synced");
    if !dir.exists() {
        std::fs::rename(tmp.path(), dir).map_err(|e| VarError::io(dir, e))?;
        let _ = tmp.keep(); // it is `dir` now
        crash_point("dir:swapped");
        return sync_dir(&parent);
    }
    if exchange(tmp.path(), dir)? {
        // `tmp` now holds the previous version; dropping it removes that.
        crash_point("dir:swapped");
        sync_dir(&parent)?;
        crash_point("dir:old-kept");
        return Ok(());
    }
    // No atomic exchange here: move the old version aside under a name `recover_dir` knows,
    // then the new one in.
    let old = aside_path(&parent, &leaf);
    std::fs::rename(dir, &old).map_err(|e| VarError::io(dir, e))?;
    crash_point("dir:moved-aside");
    if let Err(e) = std::fs::rename(tmp.path(), dir) {
        let _ = std::fs::rename(&old, dir); // put the previous version back
        return Err(VarError::io(dir, e));
    }
    let _ = tmp.keep();
    crash_point("dir:swapped");
    sync_dir(&parent)?;
    crash_point("dir:old-kept");
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Repairs what a crash between the two renames of [`write_dir_atomically`]'s fallback left:
/// `dir` missing and its previous version moved aside by a process that is gone. The previous
/// version is put back. Nothing to do (the common case) costs one `stat`.
pub fn recover_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let (parent, leaf) = split(dir);
    let Some(aside) = leftovers(&parent, &leaf)
        .into_iter()
        .find(|(path, pid)| path.extension().is_some_and(|e| e == "old") && !is_running(*pid))
    else {
        return Ok(());
    };
    std::fs::rename(&aside.0, dir).map_err(|e| VarError::io(dir, e))?;
    sync_dir(&parent)
}

/// Opens `path` for reading if it is a regular file (links followed): a FIFO would block the
/// reader and a device never end. The open itself does not block (a file swapped for a FIFO
/// after the check cannot hang it) and the opened file is checked again. Returns its length.
pub fn open_regular(path: &Path) -> std::io::Result<(File, u64)> {
    let not_regular = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a directory, FIFO, socket or device)",
        )
    };
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file ([`open_regular`]) of at most `max_bytes`: the length is checked
/// before anything is allocated, and the read stops there even if the file grows meanwhile.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let (file, len) = open_regular(path).map_err(|e| VarError::io(path, e))?;
    if len > max_bytes {
        return Err(VarError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{len} bytes, more than the {max_bytes} this file may have"),
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes)
        .read_to_end(&mut bytes)
        .map_err(|e| VarError::io(path, e))?;
    Ok(bytes)
}

/// `dir/name`, refused when it resolves (through symlinks) outside `dir`: a model directory's
/// files are its own, so a link planted in one cannot make a loader read `/etc/shadow` or
/// another user's files. A missing file is returned as is (its read then says so).
pub fn inside(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let (Ok(real_dir), Ok(real)) = (dir.canonicalize(), path.canonicalize()) else {
        return Ok(path);
    };
    if !real.starts_with(&real_dir) {
        return Err(VarError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a link to {}, outside the model directory; copy the file in instead",
                    real.display()
                ),
            ),
        ));
    }
    Ok(path)
}

/// Test hook: with `VAR_CRASH_AT=POINT` (or `POINT:N`, the N-th time) in the environment, the
/// process aborts when it reaches `POINT`: no unwinding and no clean-up, as if it were killed
/// there. The points are the steps of the writers above (`file:written`, `dir:swapped`, …).
pub fn crash_point(point: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static ARMED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var("VAR_CRASH_AT").ok()?;
        Some(match spec.rsplit_once(':') {
            Some((p, n)) if n.parse::<usize>().is_ok() => (p.to_string(), n.parse().unwrap()),
            _ => (spec, 1),
        })
    });
    if let Some((at, nth)) = armed
        && at.as_str() == point
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        std::process::abort();
    }
}

/// The directory of `path` ("." for a bare name) and its file name.
fn split(path: &Path) -> (PathBuf, String) {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    (parent, name)
}

fn prefix(name: &str) -> String {
    format!(".{name}.")
}

/// `.NAME.PID.`: the start of every temporary of NAME, traceable to its writer.
fn temporary_prefix(name: &str) -> String {
    format!("{}{}.", prefix(name), std::process::id())
}

/// Temporaries named `PREFIX RANDOM.partial`: hidden, exclusive, and with the ordinary modes of
/// model files and pictures (tempfile's default is owner-only; the umask still applies).
fn temporary(prefix: &str, dir: bool) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix).suffix(".partial").rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(if dir {
            0o755
        } else {
            0o644
        }));
    }
    #[cfg(not(unix))]
    let _ = dir;
    b
}

/// Where the fallback moves the previous version of `.../LEAF` aside.
fn aside_path(parent: &Path, leaf: &str) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    parent.join(format!("{}{random:016x}.old", temporary_prefix(leaf)))
}

/// The temporaries and moved-aside versions of NAME in `parent`, with their writers' pids.
fn leftovers(parent: &Path, name: &str) -> Vec<(PathBuf, u32)> {
    let prefix = prefix(name);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let rest = file.strip_prefix(&prefix)?;
            if !(rest.ends_with(".partial") || rest.ends_with(".old")) {
                return None;
            }
            let pid = rest.split('.').next()?.parse::<u32>().ok()?;
            Some((e.path(), pid))
        })
        .collect()
}

/// Removes the temporaries of NAME whose writers are gone (a crash's leftovers). Best effort:
/// a leftover that cannot be removed is only disk space.
fn remove_stale_temporaries(parent: &Path, name: &str) {
    for (path, pid) in leftovers(parent, name) {
        if path.extension().is_some_and(|e| e == "partial") && !is_running(pid) {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

/// Whether process `pid` is alive. Where that cannot be told cheaply it is assumed alive, so a
/// leftover is kept rather than a running writer's temporary removed.
fn is_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Swaps `a` and `b` in one step. `Ok(false)`: this system or file system cannot.
fn exchange(a: &Path, b: &Path) -> Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            // EINVAL: a file system without the flag (or an old kernel); ENOSYS: no renameat2.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => Ok(false),
            Err(e) => Err(VarError::io(b, e.into())),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// Flushes every file below `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| VarError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| VarError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| VarError::io(&path, e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| VarError::io(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// Flushes a directory's entries (a rename in it) to the disk. Only Unix can open a directory
/// for that; elsewhere the rename's own durability is what the system gives.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| VarError::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

// tempfile is a native dependency; these tests touch the disk.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

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
        assert_eq!(
            names(dir.path()),
            ["a.bin"],
            "the temporary was left behind"
        );
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("out.png");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomically(&path, b"picture").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"picture");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn a_directory_is_replaced_whole_and_a_failed_fill_leaves_it_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        write_files_atomically(&dir, &[("a", b"1"), ("b", b"2")]).unwrap();
        write_files_atomically(&dir, &[("c", b"3")]).unwrap();
        assert_eq!(
            names(&dir),
            ["c"],
            "the new version replaces the old one whole"
        );
        let failed = write_dir_atomically(&dir, |tmp| {
            std::fs::write(tmp.join("d"), b"4").unwrap();
            Err(VarError::InvalidArgument("stop".into()))
        });
        assert!(failed.is_err());
        assert_eq!(names(&dir), ["c"]);
        assert_eq!(names(root.path()), ["model"], "no temporary left");
    }

    #[test]
    fn a_crash_between_the_fallbacks_renames_is_repaired_and_leftovers_of_dead_writers_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("checkpoint");
        // What the fallback leaves when killed between its renames: no `dir`, the previous
        // version aside, the new one in a temporary. Pid 0 is no process's (the kernel's).
        let old = root.path().join(".checkpoint.0.0123456789abcdef.old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("state.json"), b"step 1").unwrap();
        let partial = root.path().join(".checkpoint.0.AbCdEfGh.partial");
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("state.json"), b"step 2").unwrap();
        // A live writer's temporary (this process's) must survive.
        let live = root
            .path()
            .join(format!(".checkpoint.{}.live.partial", std::process::id()));
        std::fs::write(&live, b"in progress").unwrap();
        recover_dir(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), b"step 1");
        write_files_atomically(&dir, &[("state.json", b"step 3")]).unwrap();
        assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), b"step 3");
        let mut left = names(root.path());
        left.retain(|n| n != "checkpoint");
        assert_eq!(left, [live.file_name().unwrap().to_str().unwrap()]);
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_inside_the_directory_within_their_cap_are_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        std::fs::write(root.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("var.safetensors"))
            .unwrap();
        std::os::unix::fs::symlink(dir.join("config.json"), dir.join("alias.json")).unwrap();
        assert_eq!(
            read_regular(&inside(&dir, "config.json").unwrap(), 2).unwrap(),
            b"{}"
        );
        assert!(
            inside(&dir, "alias.json").is_ok(),
            "a link inside the directory is fine"
        );
        let e = inside(&dir, "var.safetensors").unwrap_err().to_string();
        assert!(e.contains("outside the model directory"), "{e}");
        let e = read_regular(&dir.join("config.json"), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 bytes, more than the 1"), "{e}");
        let e = read_regular(&dir, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        // A FIFO would block a plain read forever.
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let e = read_regular(&fifo, 1 << 20).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }

    #[test]
    fn a_crash_point_that_is_not_armed_does_nothing() {
        crash_point("file:written");
    }
}
