//! `cas export`: writes a tree out as files, byte-identical, with modes, mtimes,
//! symlinks and empty directories; all-zero pieces become holes.
//!
//! The destination must be new or empty. Paths come from a validated manifest
//! (relative, no `..`, nothing below a symlink) and every file is created with
//! `O_EXCL | O_NOFOLLOW`, so an export never writes outside its directory.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::manifest::{Entry, EntryKind};
use crate::meta::parse::Metainfo;
use crate::read::{load_manifest, write_file, Sink};
use crate::store::Store;
use crate::{Error, InfoHash, Result, TreeId};

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

struct SparseFile<'a> {
    file: &'a mut File,
    written: u64,
}

impl Sink for SparseFile<'_> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.written += bytes.len() as u64;
        self.file.write_all(bytes)
    }
    fn zeros(&mut self, len: u64) -> std::io::Result<()> {
        self.written += len;
        self.file.seek(SeekFrom::Current(len as i64)).map(|_| ())
    }
}

pub(crate) fn mtime(e: &Entry) -> SystemTime {
    let d = Duration::new(e.mtime_secs.unsigned_abs(), e.mtime_nanos.min(999_999_999));
    if e.mtime_secs >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

pub(crate) fn set_symlink_mtime(path: &Path, e: &Entry) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let ts = libc::timespec {
        tv_sec: e.mtime_secs as libc::time_t,
        tv_nsec: e.mtime_nanos.into(),
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two valid timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Creates a new file, never through a symlink and never over anything.
pub(crate) fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(Error::io(path, "create file"))
}

/// Writes a file entry's content into `file` (at `path`, for errors), checked
/// against its content hash; zeros become holes. Then its length, mode and mtime,
/// and fsync.
pub(crate) fn fill_file(store: &Store, e: &Entry, file: &mut File, path: &Path) -> Result<()> {
    let EntryKind::File { size, .. } = &e.kind else {
        return Err(Error::Invalid(format!("{} is not a file", e.path_lossy())));
    };
    let mut sink = SparseFile { file, written: 0 };
    write_file(store, e, &mut sink).map_err(|err| match err {
        Error::Io { err, .. } => Error::io(path, "write")(err),
        other => other,
    })?;
    file.set_len(*size).map_err(Error::io(path, "set length"))?;
    file.set_permissions(std::fs::Permissions::from_mode(e.mode))
        .map_err(Error::io(path, "set mode"))?;
    file.set_modified(mtime(e))
        .map_err(Error::io(path, "set mtime"))?;
    file.sync_all().map_err(Error::io(path, "sync"))
}

/// Makes `dest` an empty directory, refusing one that has entries.
fn prepare(dest: &Path) -> Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(Error::BadInput {
                    path: dest.to_path_buf(),
                    reason: "export destination is not empty".into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(Error::io(dest, "create directory"))?;
        }
        Err(e) => return Err(Error::io(dest, "open export destination")(e)),
    }
    Ok(())
}

/// Exports `tree` into `dest`, which must not exist or be an empty directory.
pub fn export(store: &Store, tree: &TreeId, dest: &Path) -> Result<ExportReport> {
    let manifest = load_manifest(store, tree)?;
    prepare(dest)?;
    let mut report = ExportReport::default();
    let mut dirs: Vec<(PathBuf, &Entry)> = Vec::new();
    for e in &manifest.entries {
        let path = dest.join(std::ffi::OsStr::from_bytes(&e.path));
        match &e.kind {
            EntryKind::Dir => {
                std::fs::create_dir(&path).map_err(Error::io(&path, "create directory"))?;
                dirs.push((path, e));
                report.dirs += 1;
            }
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path)
                    .map_err(Error::io(&path, "create symlink"))?;
                set_symlink_mtime(&path, e).map_err(Error::io(&path, "set mtime"))?;
                report.symlinks += 1;
            }
            EntryKind::File { size, .. } => {
                let mut file = create_new(&path)?;
                fill_file(store, e, &mut file, &path)?;
                report.files += 1;
                report.bytes += size;
            }
        }
    }
    // Directories last, deepest first, so that writing their contents does not change
    // their mtimes and a read-only directory does not block its own contents.
    for (path, e) in dirs.iter().rev() {
        let dir = File::open(path).map_err(Error::io(path, "open directory"))?;
        dir.set_modified(mtime(e))
            .map_err(Error::io(path, "set mtime"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode))
            .map_err(Error::io(path, "set mode"))?;
    }
    Ok(report)
}

/// Exports any stored torrent into `dest` (new or empty) with the file names its
/// .torrent gives (a multi-file torrent in a directory of its name, as BitTorrent
/// clients do); pad files are left out. The names were checked when the torrent
/// was parsed, and files are created with `O_EXCL | O_NOFOLLOW`.
pub fn export_torrent(store: &Store, ih: &InfoHash, dest: &Path) -> Result<ExportReport> {
    let record = crate::read::torrent(store, ih)?;
    let meta = Metainfo::parse(&record.metainfo).map_err(|e| Error::Corrupt {
        path: store.root().join("torrents").join(ih.to_hex()),
        reason: e.to_string(),
    })?;
    prepare(dest)?;
    let mut report = ExportReport::default();
    let plen = u64::from(record.piece_length);
    for f in meta.files.iter().filter(|f| !f.pad) {
        // A multi-file torrent's files live in a directory named after the torrent.
        let mut comps: Vec<&str> = Vec::new();
        if !meta.single_file {
            comps.push(&meta.name);
        }
        comps.extend(f.path.iter().map(String::as_str));
        let mut path = dest.to_path_buf();
        for (i, c) in comps.iter().enumerate() {
            path.push(c);
            if i + 1 < comps.len() && !path.is_dir() {
                std::fs::create_dir(&path).map_err(Error::io(&path, "create directory"))?;
                report.dirs += 1;
            }
        }
        let mut file = create_new(&path)?;
        let (mut at, end) = (f.offset, f.offset + f.length);
        let mut out = SparseFile {
            file: &mut file,
            written: 0,
        };
        while at < end {
            let piece = (at / plen) as usize;
            let id = record.pieces.get(piece).ok_or_else(|| Error::Corrupt {
                path: store.root().join("torrents").join(ih.to_hex()),
                reason: format!("piece {piece} is missing from the record"),
            })?;
            let within = (at % plen) as usize;
            let take = ((end - at) as usize).min(plen as usize - within);
            let entry = store.entry(id)?.ok_or(Error::MissingChunk(*id))?;
            let sent = if entry.stored == 0 {
                // An all-zero piece: a hole.
                out.zeros(take as u64)
            } else {
                let chunk = store.read_at(*id, &entry)?;
                // Trailing zeros may be left out of a chunk's bytes.
                let bytes = chunk.bytes();
                let have = bytes.len().saturating_sub(within).min(take);
                let from = within.min(bytes.len());
                out.data(&bytes[from..from + have])
                    .and_then(|()| out.zeros((take - have) as u64))
            };
            sent.map_err(Error::io(&path, "write"))?;
            at += take as u64;
        }
        // A file that ends in a hole gets its length.
        file.set_len(f.length)
            .map_err(Error::io(&path, "set length"))?;
        file.sync_all().map_err(Error::io(&path, "sync"))?;
        report.files += 1;
        report.bytes += f.length;
    }
    Ok(report)
}
