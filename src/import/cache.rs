//! What an import saw of a directory's files, so that the next import of it (a sync's
//! next scan) can take unchanged files from it without reading them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use crate::manifest::EntryKind;

/// What an import saw of each regular file it read: device, inode, size, mtime and
/// ctime, and the entry it made. Files changed within a second of the import are left
/// out (a change in the same clock tick would not show).
#[derive(Clone, Debug, Default)]
pub struct StatCache(pub(super) HashMap<String, (FileStat, EntryKind)>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl FileStat {
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
        assert!(settled.directory_torrent.is_some());
        let (again, read) = scan(&store, &dir, Some(settled.stat_cache.clone()));
        assert_eq!(read, 0);
        assert_eq!(again.tree, settled.tree);
        assert!(again.directory_torrent.is_none());
        assert_eq!(again.files.len(), 2);
        // A changed file is read again, the other one not.
        std::fs::write(dir.join("small"), b"SMALL").unwrap();
        let (changed, read) = scan(&store, &dir, Some(again.stat_cache.clone()));
        assert_eq!(read, 5);
        assert_ne!(changed.tree, settled.tree);
        let small = changed.files.iter().find(|f| f.path == "small").unwrap();
        assert_eq!(small.blake3.0, *blake3::hash(b"SMALL").as_bytes());
    }
}
