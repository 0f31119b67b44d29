//! The chunk half of `cas fsck`: every record of every pack re-hashed, every index
//! entry checked against the records, stale SHA-1 lookup keys found, every padded
//! lookup's chunk re-hashed with its zeros against its key; and the repair,
//! which drops what is bad from the index (the bytes stay for gc).

use std::collections::{HashMap, HashSet};

use super::chunk::padded_sha1;
use super::index::{IndexBatch, IndexEntry};
use super::pack::{self, ScanItem};
use super::ChunkStore;
use crate::{ChunkId, PieceHash, Result};

/// What a check of the chunks found.
#[derive(Debug, Default)]
pub struct ChunkCheck {
    pub packs: usize,
    pub chunks: usize,
    pub bytes_checked: u64,
    /// Unreadable packs and index entries whose bytes are missing or do not match:
    /// "what: what is wrong".
    pub damaged: Vec<String>,
    /// The damaged index entries themselves.
    pub bad: Vec<(ChunkId, IndexEntry)>,
    /// Chunks of which the packs hold an intact record.
    pub intact: HashSet<ChunkId>,
    /// SHA-1 lookup keys naming a chunk the index lacks.
    pub stale: Vec<(PieceHash, ChunkId)>,
    /// Padded lookups naming a chunk the index lacks (stale, harmless) or whose chunk
    /// then zeros does not hash to the key (listed in `damaged` too).
    pub bad_padded: Vec<(PieceHash, ChunkId)>,
    /// Of those, the stale ones.
    pub stale_padded: usize,
    /// Padded lookups checked.
    pub padded: usize,
    /// Records that nothing indexes, and unreadable byte ranges at pack ends.
    pub orphaned_records: usize,
    pub orphaned_bytes: u64,
}

impl ChunkCheck {
    /// Whether `id` is indexed and its bytes are sound.
    pub fn is_bad(&self, id: &ChunkId) -> bool {
        self.bad.iter().any(|(b, _)| b == id)
    }
}

impl ChunkStore {
    /// Re-hashes every record and checks every index entry against them.
    pub fn verify(&self) -> Result<ChunkCheck> {
        self.commit()?;
        let mut report = ChunkCheck::default();
        let mut records: HashMap<(u32, u64), (ChunkId, bool)> = HashMap::new();
        let dir = self.packs_dir();
        for n in self.pack_numbers()? {
            report.packs += 1;
            let path = dir.join(pack::pack_file_name(n));
            let items = match pack::scan(&path) {
                Ok(items) => items,
                Err(e) => {
                    report.damaged.push(format!("pack {}: {e}", path.display()));
                    continue;
                }
            };
            for item in items {
                match item {
                    ScanItem::Record {
                        offset,
                        header,
                        intact,
                    } => {
                        report.bytes_checked += u64::from(header.len);
                        records.insert((n, offset), (header.digests.id, intact));
                        if intact {
                            report.intact.insert(header.digests.id);
                        }
                    }
                    ScanItem::Garbage { len, .. } => report.orphaned_bytes += len,
                }
            }
        }
        let mut referenced = HashSet::new();
        for item in self.index().entries() {
            let (id, entry) = item?;
            report.chunks += 1;
            let at = (entry.at.pack, entry.at.offset);
            let problem = match records.get(&at) {
                None => Some("its record is missing or its header is damaged"),
                Some((rid, _)) if *rid != id => Some("the index points at another chunk's record"),
                Some((_, false)) => Some("its bytes do not match its hash"),
                Some(_) => None,
            };
            referenced.insert(at);
            if let Some(p) = problem {
                report.damaged.push(format!(
                    "chunk {id} ({} offset {}): {p}",
                    pack::pack_file_name(entry.at.pack),
                    entry.at.offset
                ));
                report.bad.push((id, entry));
            }
        }
        report.orphaned_records = records.keys().filter(|at| !referenced.contains(at)).count();
        for item in self.index().sha1_keys() {
            let (sha1, id) = item?;
            if self.index().get(&id)?.is_none() {
                report.stale.push((sha1, id));
            }
        }
        self.verify_padded(&mut report)?;
        Ok(report)
    }

    /// Every padded lookup: its chunk indexed and sound, shorter than the padded
    /// length, and its bytes then zeros hashing to the key.
    fn verify_padded(&self, report: &mut ChunkCheck) -> Result<()> {
        for item in self.index().padded_keys() {
            let (sha1, id, padded) = item?;
            report.padded += 1;
            let Some(entry) = self.index().get(&id)? else {
                report.bad_padded.push((sha1, id));
                report.stale_padded += 1;
                continue;
            };
            if report.is_bad(&id) {
                continue; // reported with its chunk; dropped with it on repair
            }
            let problem = if entry.len >= padded.len {
                Some(format!("its length {} is not past the chunk's", padded.len))
            } else {
                match self.read_at(id, &entry) {
                    Ok(chunk) if padded_sha1(chunk.bytes(), padded.len as usize) == sha1 => None,
                    Ok(_) => Some("the chunk then zeros does not hash to it".to_string()),
                    Err(e) => Some(format!("its chunk cannot be read: {e}")),
                }
            };
            if let Some(p) = problem {
                report
                    .damaged
                    .push(format!("padded lookup {sha1} -> chunk {id}: {p}"));
                report.bad_padded.push((sha1, id));
            }
        }
        Ok(())
    }

    /// Drops the damaged entries and stale keys `check` found; says what it did.
    pub fn repair(&mut self, check: &ChunkCheck) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut batch = IndexBatch::default();
        for (id, entry) in &check.bad {
            batch.remove(*id, entry);
        }
        for (sha1, id) in &check.bad_padded {
            batch.remove_padded(sha1, *id);
        }
        // A damaged chunk's padded lookups go with it.
        for item in self.index().padded_keys() {
            let (sha1, id, _) = item?;
            if check.is_bad(&id) {
                batch.remove_padded(&sha1, id);
            }
        }
        self.index().apply(batch)?;
        for (sha1, id) in &check.stale {
            self.index().remove_sha1_key(sha1, id)?;
        }
        self.index().flush()?;
        if !check.bad.is_empty() {
            done.push(format!(
                "dropped {} damaged chunks from the index",
                check.bad.len()
            ));
        }
        if !check.bad_padded.is_empty() {
            done.push(format!(
                "dropped {} padded lookups ({} stale)",
                check.bad_padded.len(),
                check.stale_padded
            ));
        }
        if !check.stale.is_empty() {
            done.push(format!(
                "dropped {} stale SHA-1 lookup keys",
                check.stale.len()
            ));
        }
        Ok(done)
    }
}
