//! Walking a directory for import: every entry, sorted, symlinks never followed, with
//! a clear refusal for what cas cannot store faithfully.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One entry found under the import root.
#[derive(Debug)]
pub struct Found {
    /// Absolute (or as given) path on disk, for reading and for error messages.
    pub disk: PathBuf,
    /// Path relative to the root, `/`-separated, UTF-8.
    pub rel: String,
    pub meta: Metadata,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadInput {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Lists everything below `root` (not `root` itself), parents before children, each
/// directory's entries sorted by name bytes. Entries of `root` named in `ignore` are
/// left out, with everything below them.
pub fn walk(root: &Path, ignore: &[String]) -> Result<Vec<Found>> {
    // The root is followed if it is a symlink (as `cp -r link/` would); nothing below it is.
    let meta = std::fs::metadata(root).map_err(Error::io(root, "read"))?;
    if !meta.is_dir() {
        return Err(bad(root, "not a directory (cas import takes a directory)"));
    }
    let mut out = Vec::new();
    walk_dir(root, "", ignore, &mut out)?;
    // Canonical order is by full path bytes, which differs from a depth-first walk
    // ("a.txt" sorts between "a" and "a/b").
    out.sort_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(out)
}

fn walk_dir(dir: &Path, prefix: &str, ignore: &[String], out: &mut Vec<Found>) -> Result<()> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(Error::io(dir, "list directory"))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(dir, "list directory"))?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let disk = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(bad(
                &disk,
                "file name is not UTF-8; torrents carry UTF-8 names, rename it to import",
            ));
        };
        if prefix.is_empty() && ignore.iter().any(|i| i == name) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&disk).map_err(Error::io(&disk, "read metadata"))?;
        let ft = meta.file_type();
        let kind = if ft.is_fifo() {
            Some("a named pipe")
        } else if ft.is_socket() {
            Some("a socket")
        } else if ft.is_block_device() || ft.is_char_device() {
            Some("a device")
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(bad(
                &disk,
                format!("{kind} cannot be stored; remove it or import a directory without it"),
            ));
        }
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let is_dir = ft.is_dir();
        out.push(Found {
            disk: disk.clone(),
            rel: rel.clone(),
            meta,
        });
        if is_dir {
            walk_dir(&disk, &rel, &[], out)?;
        }
    }
    Ok(())
}

/// Permission bits and mtime of an entry.
pub fn mode_and_mtime(meta: &Metadata) -> (u32, i64, u32) {
    (meta.mode() & 0o7777, meta.mtime(), meta.mtime_nsec() as u32)
}
