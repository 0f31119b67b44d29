//! `cas index rebuild`: recreates the chunk index from the packs alone.
//!
//! Every record is re-hashed; only intact ones are indexed (the first copy of a chunk
//! wins). A pack's committed length is the end of its last intact record, so new
//! chunks never go after damaged or torn bytes.

use serde::Serialize;

use super::index::{IndexBatch, IndexEntry};
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
}

pub fn rebuild(store: &mut ChunkStore) -> Result<RebuildReport> {
    store.commit()?;
    store.index().clear()?;
    let mut report = RebuildReport::default();
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
