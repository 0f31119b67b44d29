//! The chunk half of garbage collection: given the chunks something live reaches,
//! drop the index entries of every other chunk and compact the packs that hold dead
//! bytes. A live chunk is only ever moved: it is copied to a new pack, synced and
//! re-indexed before its old pack is deleted.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::index::IndexBatch;
use super::pack::{self, pack_file_name};
use super::ChunkStore;
use crate::{ChunkId, Error, Result};

/// What a sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub chunks_removed: usize,
    pub packs_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl ChunkStore {
    /// Bytes of every pack file.
    pub fn pack_bytes(&self) -> Result<u64> {
        let dir = self.packs_dir();
        let mut total = 0;
        for n in self.pack_numbers()? {
            let p = dir.join(pack_file_name(n));
            total += std::fs::metadata(&p)
                .map_err(Error::io(&p, "stat pack"))?
                .len();
        }
        Ok(total)
    }

    /// Forgets every chunk not in `live` and compacts the packs that held them.
    pub fn sweep(&mut self, live: &HashSet<ChunkId>) -> Result<SweepReport> {
        self.commit()?;
        let mut report = SweepReport {
            bytes_before: self.pack_bytes()?,
            ..SweepReport::default()
        };
        // Drop index entries of dead chunks; note live records per pack.
        let mut batch = IndexBatch::default();
        let mut live_by_pack: BTreeMap<u32, Vec<(u64, ChunkId)>> = BTreeMap::new();
        let mut live_bytes: HashMap<u32, u64> = HashMap::new();
        for item in self.index().entries() {
            let (id, entry) = item?;
            if live.contains(&id) {
                live_by_pack
                    .entry(entry.at.pack)
                    .or_default()
                    .push((entry.at.offset, id));
                *live_bytes.entry(entry.at.pack).or_default() +=
                    pack::RECORD_HEADER_LEN as u64 + u64::from(entry.stored);
            } else {
                batch.remove(id, &entry);
                report.chunks_removed += 1;
            }
        }
        // A padded lookup goes with its chunk.
        for item in self.index().padded_keys() {
            let (sha1, id, _) = item?;
            if !live.contains(&id) {
                batch.remove_padded(&sha1, id);
            }
        }
        self.index().apply(batch)?;
        self.index().flush()?;

        // Compact every pack with dead bytes into a new pack.
        let dir = self.packs_dir();
        let mut to_delete = Vec::new();
        let mut started = false;
        for n in self.pack_numbers()? {
            if Some(n) == self.current_pack() {
                continue;
            }
            let path = dir.join(pack_file_name(n));
            let len = std::fs::metadata(&path)
                .map_err(Error::io(&path, "stat pack"))?
                .len();
            let live = live_bytes.get(&n).copied().unwrap_or(0);
            if len <= pack::PACK_HEADER_LEN + live {
                continue;
            }
            if let Some(records) = live_by_pack.get_mut(&n) {
                records.sort_unstable();
                if !started {
                    self.start_new_pack()?;
                    started = true;
                }
                for (_, id) in records.iter() {
                    let chunk = self.get(id)?;
                    self.relocate(&chunk)?;
                }
                self.commit()?;
            }
            to_delete.push(n);
        }
        self.commit()?;
        let mut batch = IndexBatch::default();
        for n in &to_delete {
            batch.remove_pack(*n);
        }
        self.index().apply(batch)?;
        self.index().flush()?;
        for n in &to_delete {
            let path = dir.join(pack_file_name(*n));
            std::fs::remove_file(&path).map_err(Error::io(&path, "remove pack"))?;
            report.packs_rewritten += 1;
        }
        if !to_delete.is_empty() {
            super::sync_dir(&dir)?;
            self.drop_readers();
        }
        report.bytes_after = self.pack_bytes()?;
        Ok(report)
    }
}
