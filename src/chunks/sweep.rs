//! The chunk half of garbage collection: given the chunks something live reaches,
//! drop the index entries of every other chunk and compact the packs that hold dead
//! bytes. A live chunk is only ever moved: it is copied to a new pack, synced and
//! re-indexed before its old pack is deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

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
    ///
    /// Space is freed before any is taken: packs that hold no live record are deleted
    /// first; then the others are compacted one at a time, fewest live bytes first,
    /// each old pack deleted as soon as its live records are durable and re-indexed
    /// elsewhere. A pack whose live records do not fit in the free space is not
    /// started: [`Error::NoSpace`] says how much it needs.
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

        // Packs with dead bytes: those with nothing live, and those to compact.
        let dir = self.packs_dir();
        let mut dead = Vec::new();
        let mut compact = Vec::new();
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
            match live_by_pack.remove(&n) {
                Some(records) => compact.push((live, n, records)),
                None => dead.push(n),
            }
        }
        self.delete_packs(&dead)?;
        report.packs_rewritten += dead.len();

        // Then one pack at a time, the cheapest first.
        compact.sort_unstable_by_key(|(live, n, _)| (*live, *n));
        let mut started = false;
        for (live, n, mut records) in compact {
            records.sort_unstable();
            let needed = live
                + pack::PACK_HEADER_LEN
                + INDEX_ROOM_PER_RECORD * records.len() as u64
                + INDEX_ROOM;
            let available = free_bytes(&dir)?;
            let no_space = |available| Error::NoSpace {
                path: dir.clone(),
                what: format!(
                    "cas gc (compacting {}, {live} live bytes in {} records)",
                    pack_file_name(n),
                    records.len()
                ),
                needed,
                available,
            };
            if available < needed {
                return Err(no_space(available));
            }
            let moved = (|| {
                if !started {
                    self.start_new_pack()?;
                    started = true;
                }
                for (_, id) in &records {
                    let chunk = self.get(id)?;
                    self.relocate(&chunk)?;
                }
                self.commit()
            })();
            match moved {
                Ok(()) => {}
                Err(e) if is_enospc(&e) => {
                    return Err(no_space(free_bytes(&dir).unwrap_or(0)));
                }
                Err(e) => return Err(e),
            }
            self.delete_packs(&[n])?;
            report.packs_rewritten += 1;
        }
        self.commit()?;
        report.bytes_after = self.pack_bytes()?;
        Ok(report)
    }

    /// Deletes packs that no index entry names any more: their `p` keys first
    /// (flushed), then the files, then `packs/` is fsynced. Open handles on them are
    /// closed, so their space is freed at once.
    fn delete_packs(&self, numbers: &[u32]) -> Result<()> {
        if numbers.is_empty() {
            return Ok(());
        }
        let mut batch = IndexBatch::default();
        for n in numbers {
            batch.remove_pack(*n);
        }
        self.index().apply(batch)?;
        self.index().flush()?;
        self.drop_readers();
        let dir = self.packs_dir();
        for n in numbers {
            let path = dir.join(pack_file_name(*n));
            std::fs::remove_file(&path).map_err(Error::io(&path, "remove pack"))?;
        }
        super::sync_dir(&dir)
    }
}

/// Room the index may take to record one moved chunk, and on top of all of them.
const INDEX_ROOM_PER_RECORD: u64 = 256;
const INDEX_ROOM: u64 = 64 << 10;

/// Bytes an unprivileged writer may still use on the file system holding `path`.
fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{}: path holds a NUL byte", path.display())))?;
    // SAFETY: `c` is NUL-terminated; `st` is written by statvfs before it is read.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io(path, "statvfs")(std::io::Error::last_os_error()));
    }
    #[allow(clippy::useless_conversion)] // u32 on some targets
    let (avail, frsize) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(avail.saturating_mul(frsize))
}

/// Whether an error is the disk being full.
fn is_enospc(e: &Error) -> bool {
    match e {
        Error::Io { err, .. } => err.raw_os_error() == Some(libc::ENOSPC),
        Error::Index {
            err: sled::Error::Io(err),
            ..
        } => err.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}
