//! What an import saw of a directory's files, so that the next import of it (a sync's
//! next scan, or `cas import` of the same directory under the same ref) can take
//! unchanged files from it without reading them.
//!
//! `cas import` keeps it in the store, one file per ref (`imports/<ref>`, written
//! atomically; layout in `docs/on-disk-format.md`); `cas sync` keeps it in memory. A
//! cache is only ever a hint: a file is taken unread only if its device, inode, size,
//! mtime and ctime are as cached and its torrent record is in the store; a cache that
//! is missing, damaged, or made for another directory, piece length or privacy is
//! ignored, and the files are read again.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hasher::Piece;
use crate::catalog::{check_ref_name, decode, encode};
use crate::manifest::EntryKind;
use crate::store::Store;
use crate::{PieceHash, Result, TreeId};

/// Magic and version of a persisted stat cache.
const MAGIC: &[u8; 8] = b"CASSEEN\x01";

/// What an import saw of each regular file it read or took unread: device, inode,
/// size, mtime and ctime, and what it made of it. Files changed within a second of
/// the import are left out (a change in the same clock tick would not show).
#[derive(Clone, Debug, Default)]
pub struct StatCache(pub(super) HashMap<String, Known>);

/// One file as an import left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Known {
    pub stat: FileStat,
    /// The manifest entry's kind: size, content, file torrent.
    pub kind: EntryKind,
    /// The file's pieces, as its torrent lists them.
    pub pieces: Vec<Piece>,
    /// The SHA-1 of the last piece padded with zeros to the piece length, if it was
    /// computed (for a directory torrent): so that a later directory torrent needs
    /// neither the file nor its chunks.
    pub padded: Option<PieceHash>,
}

impl StatCache {
    /// How many files it knows.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStat {
    pub(super) fn of(meta: &std::fs::Metadata) -> FileStat {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file last changed (ctime) before `t`.
    pub(super) fn changed_before(&self, t: (i64, i64)) -> bool {
        self.ctime < t
    }
}

/// A second ago, as (seconds, nanoseconds) since the epoch: a file changed before then
/// cannot change again within the same clock tick unseen.
pub(super) fn settle_point() -> (i64, i64) {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or((0, 0), |d| {
            let d = d.saturating_sub(std::time::Duration::from_secs(1));
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        })
}

/// The persisted form, `imports/<ref>`.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// The directory imported, canonical, as bytes.
    dir: Vec<u8>,
    piece_length: u32,
    private: bool,
    /// The tree the import made.
    tree: TreeId,
    files: Vec<(String, Known)>,
}

/// What a persisted cache is for: it is used only by an import of the same
/// directory, cut and published the same way.
pub(super) struct Key {
    dir: PathBuf,
    piece_length: u32,
    private: bool,
}

impl Key {
    pub(super) fn new(dir: &Path, piece_length: u32, private: bool) -> Option<Key> {
        Some(Key {
            dir: std::fs::canonicalize(dir).ok()?,
            piece_length,
            private,
        })
    }
}

fn path_of(store: &Store, ref_name: &str) -> Result<PathBuf> {
    check_ref_name(ref_name)?;
    Ok(store.root().join("imports").join(ref_name))
}

/// The cache the last `cas import` under `ref_name` left, if it is one for `key`.
pub(super) fn load(store: &Store, ref_name: &str, key: &Key) -> Option<(StatCache, TreeId)> {
    let path = path_of(store, ref_name).ok()?;
    let bytes = std::fs::read(&path).ok()?;
    let saved: Saved = match decode(MAGIC, &bytes, &path) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("{e}; the files are read again");
            return None;
        }
    };
    (saved.dir == key.dir.as_os_str().as_bytes()
        && saved.piece_length == key.piece_length
        && saved.private == key.private)
        .then(|| (StatCache(saved.files.into_iter().collect()), saved.tree))
}

/// Keeps `cache` as what the import of `key` under `ref_name` saw.
pub(super) fn save(
    store: &Store,
    ref_name: &str,
    key: &Key,
    tree: TreeId,
    cache: &StatCache,
) -> Result<()> {
    let path = path_of(store, ref_name)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(crate::Error::io(dir, "create directory"))?;
    }
    let mut files: Vec<_> = cache
        .0
        .iter()
        .map(|(p, k)| (p.clone(), k.clone()))
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let saved = Saved {
        dir: key.dir.as_os_str().as_bytes().to_vec(),
        piece_length: key.piece_length,
        private: key.private,
        tree,
        files,
    };
    crate::chunks::write_atomic(&path, &encode(MAGIC, &saved))
}

#[cfg(test)]
mod tests {
    use super::super::{import, ImportOptions, ImportReport, StatCache};
    use crate::Store;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Imports `dir` with `reuse`; returns the report and the bytes read from files.
    fn scan(store: &Store, dir: &Path, reuse: Option<StatCache>) -> (ImportReport, u64) {
        let read = AtomicU64::new(0);
        let opts = ImportOptions {
            name: Some("t".into()),
            reuse,
            ..Default::default()
        };
        let progress = |n| {
            read.fetch_add(n, Ordering::Relaxed);
        };
        let r = import(store, dir, &opts, &|_| {}, &progress).unwrap();
        (r, read.load(Ordering::Relaxed))
    }

    #[test]
    fn an_unchanged_file_is_taken_from_the_last_import_unread() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("big"), vec![1u8; 100_000]).unwrap();
        std::fs::write(dir.join("small"), b"small").unwrap();
        // Files written less than a second before an import are read again anyway.
        let (first, _) = scan(&store, &dir, None);
        let (_, read) = scan(&store, &dir, Some(first.stat_cache.clone()));
        assert_eq!(
            read, 100_005,
            "just-written files are not trusted by metadata"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (settled, _) = scan(&store, &dir, None);
        let whole = settled.directory_torrent.clone().unwrap();
        let (again, read) = scan(&store, &dir, Some(settled.stat_cache.clone()));
        assert_eq!(read, 0);
        assert_eq!(again.tree, settled.tree);
        // The tree is unchanged: its directory torrent too.
        assert_eq!(again.directory_torrent.unwrap().info_hash, whole.info_hash);
        assert_eq!(again.files.len(), 2);
        // A changed file is read again, the other one not.
        std::fs::write(dir.join("big"), vec![2u8; 100_000]).unwrap();
        let (changed, read) = scan(&store, &dir, Some(again.stat_cache.clone()));
        assert_eq!(read, 100_000);
        assert_ne!(changed.tree, settled.tree);
        let big = changed.files.iter().find(|f| f.path == "big").unwrap();
        assert_eq!(big.blake3.0, *blake3::hash(&[2u8; 100_000]).as_bytes());
        // The directory torrent is made, without reading "small", and is the one a
        // full import of the directory makes.
        let made = changed.directory_torrent.unwrap().info_hash;
        let fresh = Store::open(&tmp.path().join("fresh"), Some(16 << 10)).unwrap();
        let (full, _) = scan(&fresh, &dir, None);
        assert_eq!(full.tree, changed.tree);
        assert_eq!(full.directory_torrent.unwrap().info_hash, made);
    }
}
