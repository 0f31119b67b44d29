//! `cas export`: writes a tree out as files, byte-identical, with modes, mtimes,
//! symlinks and empty directories; all-zero pieces become holes.
//!
//! The destination must be new or empty. Paths come from a validated manifest
//! (relative, no `..`, nothing below a symlink), and everything is made relative to
//! a handle on its parent directory ([`crate::dirfd::Dir`]: `openat`, `mkdirat`, `symlinkat`),
//! opened one component at a time from the destination down with `O_NOFOLLOW`; files
//! are created with `O_EXCL`. So an export never writes outside its directory, even
//! when another process swaps one of its directories for a symlink meanwhile.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dirfd::{split, Dir};
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

/// Gives the directory `dir` the entry's mtime and mode.
fn finish(dir: &Dir, e: &Entry) -> Result<()> {
    dir.file()
        .set_modified(mtime(e))
        .map_err(Error::io(dir.path(), "set mtime"))?;
    dir.file()
        .set_permissions(std::fs::Permissions::from_mode(e.mode))
        .map_err(Error::io(dir.path(), "set mode"))
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
    write_tree(store, &manifest, dest)
}

/// Writes the entries of `manifest` under `dest`, an empty directory, through
/// directory handles from `dest` down ([`Dir`]).
fn write_tree(
    store: &Store,
    manifest: &crate::manifest::Manifest,
    dest: &Path,
) -> Result<ExportReport> {
    let root = Dir::open(dest)?;
    let mut report = ExportReport::default();
    let mut dirs: Vec<&Entry> = Vec::new();
    // The parent of the last entry, open: entries come sorted, siblings together.
    let mut cached: Option<(Vec<&OsStr>, Dir)> = None;
    for e in &manifest.entries {
        let (parent, name) = split(&e.path);
        let hit = cached.as_ref().is_some_and(|(p, _)| *p == parent);
        if !hit {
            let d = root.walk(parent.iter().copied())?;
            cached = Some((parent, d));
        }
        let Some((_, dir)) = &cached else {
            continue;
        };
        match &e.kind {
            EntryKind::Dir => {
                // Owner-only until its contents are written; its mode comes last.
                dir.mkdir(name, 0o700)?;
                dirs.push(e);
                report.dirs += 1;
            }
            EntryKind::Symlink { target } => {
                dir.symlink(OsStr::from_bytes(target), name, e.mtime_secs, e.mtime_nanos)?;
                report.symlinks += 1;
            }
            EntryKind::File { size, .. } => {
                let mut file = dir.create(name)?;
                fill_file(store, e, &mut file, &dir.join(name))?;
                report.files += 1;
                report.bytes += size;
            }
        }
    }
    drop(cached);
    // Directories last, deepest first, so that writing their contents does not change
    // their mtimes and a read-only directory does not block its own contents.
    for e in dirs.iter().rev() {
        let (parent, name) = split(&e.path);
        finish(&root.walk(parent.into_iter().chain([name]))?, e)?;
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
    write_torrent(store, ih, &record, &meta, dest)
}

/// Writes the files of a torrent under `dest`, an empty directory.
fn write_torrent(
    store: &Store,
    ih: &InfoHash,
    record: &crate::catalog::TorrentRecord,
    meta: &Metainfo,
    dest: &Path,
) -> Result<ExportReport> {
    let root = Dir::open(dest)?;
    let mut report = ExportReport::default();
    let plen = u64::from(record.piece_length);
    for f in meta.files.iter().filter(|f| !f.pad) {
        // A multi-file torrent's files live in a directory named after the torrent.
        let mut comps: Vec<&OsStr> = Vec::new();
        if !meta.single_file {
            comps.push(OsStr::new(&meta.name));
        }
        comps.extend(f.path.iter().map(OsStr::new));
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        let mut dir: Option<Dir> = None;
        for c in parents {
            let at = dir.as_ref().unwrap_or(&root);
            if at.mkdir(c, 0o777)? {
                report.dirs += 1;
            }
            let next = at.dir(c)?;
            dir = Some(next);
        }
        let dir = dir.as_ref().unwrap_or(&root);
        let path = dir.join(name);
        let mut file = dir.create(name)?;
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
                let (data, zeros) = crate::store::content::piece_bytes(chunk.bytes(), within, take);
                out.data(data).and_then(|()| out.zeros(zeros as u64))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import, ImportOptions};

    /// A store holding a directory `pack` with `sub/x.txt` and `sub/y.txt`.
    fn stored() -> (tempfile::TempDir, Store, TreeId, InfoHash) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
        let src = tmp.path().join("pack");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/x.txt"), b"x marks the spot\n").unwrap();
        std::fs::write(src.join("sub/y.txt"), b"why\n").unwrap();
        let opts = ImportOptions {
            name: Some("pack".into()),
            ..Default::default()
        };
        let r = import(&store, &src, &opts, &|_| {}, &|_| {}).unwrap();
        let ih = store
            .catalog()
            .tree(&r.tree)
            .unwrap()
            .unwrap()
            .directory
            .unwrap();
        (tmp, store, r.tree, ih)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Another process swaps a directory of the destination for a symlink while an
    /// export runs; here the symlink is there before the files are written, the
    /// simplest deterministic form of that race.
    #[test]
    fn an_export_never_writes_through_a_symlink_swapped_into_its_destination() {
        let (tmp, store, tree, ih) = stored();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();

        // A torrent's files go under a directory of its name: that one is swapped.
        let record = crate::read::torrent(&store, &ih).unwrap();
        let meta = Metainfo::parse(&record.metainfo).unwrap();
        let dest = tmp.path().join("t");
        prepare(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join(&meta.name)).unwrap();
        let err = write_torrent(&store, &ih, &record, &meta, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            entries(&outside).is_empty(),
            "written outside: {:?}",
            entries(&outside)
        );
        assert!(
            err.contains(dest.join(&meta.name).to_str().unwrap()) && err.contains("symbolic link"),
            "{err}"
        );

        // A tree's directory.
        let manifest = load_manifest(&store, &tree).unwrap();
        let dest = tmp.path().join("d");
        prepare(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        let err = write_tree(&store, &manifest, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            entries(&outside).is_empty(),
            "written outside: {:?}",
            entries(&outside)
        );
        assert!(
            err.contains(dest.join("sub").to_str().unwrap()) && err.contains("symbolic link"),
            "{err}"
        );
    }
}
