//! `cas index rebuild`: recreates the chunk index from the packs alone.
//!
//! Every record is re-hashed; only intact ones are indexed (the first copy of a chunk
//! wins). A pack's committed length is the end of its last intact record, so new
//! chunks never go after damaged or torn bytes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::index::{self, Index, IndexBatch, IndexEntry};
use super::lock::StoreLock;
use super::pack::{self, Location, ScanItem};
use super::ChunkStore;
use crate::Result;

/// What a rebuild found.
#[derive(Debug, Default, Serialize)]
pub struct RebuildReport {
    pub packs: usize,
    pub chunks: usize,
    pub damaged_records: usize,
    pub unreadable_bytes: u64,
    pub unreadable_packs: Vec<String>,
    /// Where a damaged index was moved (`index.damaged-<unix seconds>`), if it was.
    pub damaged_index_moved_to: Option<PathBuf>,
}

/// Rebuilds the index of the store at `root` whatever state the index is in: for a
/// store that does not open because its index is damaged (see
/// [`ChunkStore::open_for_rebuild`]).
pub fn rebuild_damaged(root: &Path) -> Result<RebuildReport> {
    let lock = StoreLock::acquire(root)?;
    let (mut store, aside) = ChunkStore::open_for_rebuild(root, lock)?;
    let mut report = rebuild(&mut store)?;
    report.damaged_index_moved_to = report.damaged_index_moved_to.or(aside);
    Ok(report)
}

pub fn rebuild(store: &mut ChunkStore) -> Result<RebuildReport> {
    let mut report = RebuildReport::default();
    store.commit()?;
    if let Err(e) = store.index().clear() {
        // An index that opens but cannot even be emptied is replaced whole.
        if !index::is_damage(&e) {
            return Err(e);
        }
        tracing::warn!("{e}");
        let path = store.index().path().to_path_buf();
        report.damaged_index_moved_to = Some(index::move_aside(&path)?);
        store.index = Index::open(&path)?;
    }
    let dir = store.packs_dir();
    for n in store.pack_numbers()? {
        let path = dir.join(pack::pack_file_name(n));
        let items = match pack::scan(&path) {
            Ok(items) => items,
            Err(e) => {
                report.unreadable_packs.push(e.to_string());
                continue;
            }
        };
        report.packs += 1;
        let mut batch = IndexBatch::default();
        let mut end = pack::PACK_HEADER_LEN;
        for item in items {
            match item {
                ScanItem::Record {
                    offset,
                    header,
                    intact: true,
                } => {
                    end = offset + header.record_len();
                    if store.index().get(&header.digests.id)?.is_none() {
                        let at = Location { pack: n, offset };
                        batch.insert(header.digests.id, &IndexEntry::new(&header, at));
                    }
                }
                ScanItem::Record { .. } => report.damaged_records += 1,
                ScanItem::Garbage { len, .. } => report.unreadable_bytes += len,
            }
        }
        report.chunks += batch.inserted;
        batch.set_pack_len(n, end);
        store.index().apply(batch)?;
    }
    store.index().flush()?;
    Ok(report)
}
