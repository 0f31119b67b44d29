//! Durability: the sync points of the store, and the atomic file write every catalog
//! record and `config.json` use.

use std::fs::File;
use std::path::Path;

use crate::{Error, Result};

/// What was just made durable: every sync point of the store reports here, so that
/// the power-loss tests can see what a crash at that instant would leave.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Synced<'a> {
    /// A file's contents (`fsync`/`fdatasync`).
    File(&'a Path),
    /// A directory's entries.
    Dir(&'a Path),
    /// The sled index, whose files are in this directory.
    Index(&'a Path),
    /// The whole file system holding this directory (`syncfs`): every file's contents
    /// and every directory's entries below it, as they are now.
    FileSystem(&'a Path),
}

#[inline]
pub(crate) fn synced(_what: Synced<'_>) {
    #[cfg(test)]
    super::powerloss::record(_what);
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir, "sync directory"))?;
    synced(Synced::Dir(dir));
    Ok(())
}

/// Makes everything written so far on the file system that holds `dir` durable
/// (`syncfs(2)`): one sync point for many files written without an fsync each. It
/// also waits for whatever else is being written on that file system.
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(Error::io(dir, "open directory"))?;
    // SAFETY: syncfs takes a descriptor this function owns; no memory is passed.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(Error::io(dir, "sync file system")(
            std::io::Error::last_os_error(),
        ));
    }
    synced(Synced::FileSystem(dir));
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, "write")(e));
    }
    synced(Synced::File(&tmp));
    std::fs::rename(&tmp, path).map_err(Error::io(path, "rename into place"))?;
    sync_dir(dir)
}
