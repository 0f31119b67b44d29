//! Many catalog records made durable at one sync point instead of two each.
//!
//! [`CatalogBatch::put_torrent`] writes each record to a temporary file beside its
//! place (`.<name>.tmp-<pid>-<batch>`), without an fsync. [`CatalogBatch::commit`]
//! then makes all of them durable at once (`syncfs` of the store's file system; a
//! fsync of each when there are only a few), renames each into place, and fsyncs each directory it renamed into. A record
//! therefore never sits under its name before its bytes are durable: a crash before
//! the sync leaves temporary files only; a crash among the renames leaves some
//! records in place, each whole, which nothing references yet (the import writes its
//! tree record and its ref only after the commit), and the rest as temporary files.
//! Either way `has_torrent` sees only whole records, and a later import writes the
//! missing ones.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{encode, Catalog, TorrentRecord, TORRENT_MAGIC};
use crate::chunks::durable::{synced, Synced};
use crate::chunks::{sync_dir, sync_filesystem};
use crate::{Error, InfoHash, Result};

/// From this many records a batch is made durable by one `syncfs` rather than by an
/// fsync of each (about 0.2 ms each on an SSD; a `syncfs` waits for everything being
/// written on the file system, which costs more than a few fsyncs when it is busy).
const SYNCFS_FROM: usize = 16;

/// Tells the temporary files of two batches of one process apart.
static BATCHES: AtomicU64 = AtomicU64::new(0);

/// Catalog records written, durable and in place only once committed. Dropped
/// without a commit, it removes its temporary files and nothing is recorded.
pub struct CatalogBatch<'c> {
    catalog: &'c Catalog,
    tag: String,
    /// Temporary file and final place of each record written.
    written: Vec<(PathBuf, PathBuf)>,
    torrents: HashSet<InfoHash>,
}

#[cfg(test)]
thread_local! {
    /// Tests: a commit on this thread stops after this many renames, as a crash would
    /// (its temporary files left behind).
    pub(crate) static CRASH_AFTER_RENAMES: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

impl Catalog {
    /// Starts a batch of records (see the module doc).
    pub fn batch(&self) -> CatalogBatch<'_> {
        CatalogBatch {
            catalog: self,
            tag: format!(
                "{}-{}",
                std::process::id(),
                BATCHES.fetch_add(1, Ordering::Relaxed)
            ),
            written: Vec::new(),
            torrents: HashSet::new(),
        }
    }
}

impl CatalogBatch<'_> {
    /// Whether the catalog holds this torrent's record or the batch will write it.
    pub fn has_torrent(&self, ih: &InfoHash) -> bool {
        self.torrents.contains(ih) || self.catalog.has_torrent(ih)
    }

    /// Writes a torrent record, to be put in place by [`CatalogBatch::commit`]; a
    /// torrent the catalog or the batch holds already is left as it is.
    pub fn put_torrent(&mut self, ih: &InfoHash, record: &TorrentRecord) -> Result<()> {
        if self.has_torrent(ih) {
            return Ok(());
        }
        let path = self.catalog.torrent_path(ih);
        self.write(path, &encode(TORRENT_MAGIC, record))?;
        self.torrents.insert(*ih);
        Ok(())
    }

    fn write(&mut self, path: PathBuf, bytes: &[u8]) -> Result<()> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record");
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", self.tag));
        if let Err(e) = std::fs::write(&tmp, bytes) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&path, "write")(e));
        }
        self.written.push((tmp, path));
        Ok(())
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.written.len()
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// Makes every record durable, then puts each in place: one file system sync,
    /// the renames, one fsync per directory.
    pub fn commit(mut self) -> Result<()> {
        if self.written.is_empty() {
            return Ok(());
        }
        if self.written.len() < SYNCFS_FROM {
            for (tmp, path) in &self.written {
                File::open(tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(Error::io(path, "sync"))?;
                synced(Synced::File(tmp));
            }
        } else {
            sync_filesystem(&self.catalog.root)?;
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for n in 0..self.written.len() {
            #[cfg(test)]
            if CRASH_AFTER_RENAMES.get() == Some(n) {
                // As a crash would: the temporary files stay.
                self.written.clear();
                return Err(Error::Invalid("crashed during a catalog commit".into()));
            }
            let (tmp, path) = &self.written[n];
            std::fs::rename(tmp, path).map_err(Error::io(path, "rename into place"))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        self.written.clear();
        Ok(())
    }
}

impl Drop for CatalogBatch<'_> {
    fn drop(&mut self) {
        for (tmp, _) in &self.written {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::{TorrentKind, TorrentRecord};
    use crate::{ContentId, InfoHash};

    fn record(n: u8) -> TorrentRecord {
        TorrentRecord {
            kind: TorrentKind::File {
                content: ContentId([n; 32]),
            },
            length: u64::from(n),
            piece_length: 16 << 10,
            pieces: Vec::new(),
            metainfo: vec![n],
        }
    }

    #[test]
    fn a_batch_puts_its_records_in_place_only_when_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let catalog = super::Catalog::open(tmp.path()).unwrap();
        let (a, b) = (InfoHash([1; 20]), InfoHash([2; 20]));
        let mut batch = catalog.batch();
        batch.put_torrent(&a, &record(1)).unwrap();
        batch.put_torrent(&b, &record(2)).unwrap();
        batch.put_torrent(&a, &record(3)).unwrap(); // already in the batch: kept
        assert!(batch.has_torrent(&a));
        assert!(!catalog.has_torrent(&a));
        assert!(catalog.torrents().unwrap().is_empty());
        batch.commit().unwrap();
        assert_eq!(catalog.torrent(&a).unwrap().unwrap().metainfo, vec![1]);
        assert_eq!(catalog.torrent(&b).unwrap().unwrap().metainfo, vec![2]);
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("torrents"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");

        // A batch dropped unfinished leaves nothing.
        let mut batch = catalog.batch();
        batch.put_torrent(&InfoHash([3; 20]), &record(3)).unwrap();
        drop(batch);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("torrents"))
                .unwrap()
                .count(),
            2
        );
    }
}
