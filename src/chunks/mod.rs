//! The chunk store: every torrent piece once, keyed by BLAKE3 and findable by SHA-1.
//!
//! It knows chunks only: `packs/` (append-only pack files, see [`pack`]), `index/`
//! (sled, see [`index`]), the `lock`, and the durability helpers every file write of a
//! store uses ([`durable`]). What torrents, trees and refs are, and so what is live,
//! is the business of the layer above ([`crate::store`]).
//!
//! Write protocol: chunks are appended to the current pack; [`ChunkStore::commit`]
//! syncs the pack, then writes the index entries for everything appended, then flushes
//! the index. So an index entry never names bytes that are not durable, and a crash
//! leaves at worst bytes that no entry names (garbage collection reclaims them).

pub mod chunk;
pub mod durable;
pub mod index;
pub mod lock;
pub mod pack;
#[cfg(test)]
pub(crate) mod powerloss;
pub mod rebuild;
pub mod sweep;
pub mod verify;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use crate::{ChunkId, Error, PieceHash, Result};
use chunk::{Collision, Padded, VerifiedChunk};
pub use durable::{sync_dir, sync_filesystem, write_atomic};
pub(crate) use durable::{synced, Synced};
use index::{Index, IndexBatch, IndexEntry, PaddedEntry};
use lock::StoreLock;
use pack::{Location, PackWriter};

/// The longest chunk a pack record holds: 64 MiB.
pub const MAX_CHUNK_LEN: u32 = pack::MAX_CHUNK_LEN;

/// Uncommitted bytes after which [`ChunkStore::put`] commits by itself.
const COMMIT_EVERY: u64 = 256 << 20;

#[derive(Default)]
struct Writer {
    pack: Option<PackWriter>,
    /// Bytes appended since the last commit.
    pending_bytes: u64,
    /// Padded lookups to index at the next commit.
    padded: Vec<Padded>,
}

/// The open chunks of a store. Holds the store lock until dropped.
pub struct ChunkStore {
    root: PathBuf,
    index: Index,
    /// The pack being appended to; held while appending and committing.
    writer: Mutex<Writer>,
    /// Entries of chunks appended but not yet committed. Changed only by a holder of
    /// `writer`.
    pending: RwLock<HashMap<ChunkId, IndexEntry>>,
    readers: Mutex<HashMap<u32, std::sync::Arc<File>>>,
    _lock: StoreLock,
}

impl ChunkStore {
    /// Opens the packs and the index under `root`, creating them if absent. The caller
    /// holds the store's `lock`, which the chunk store keeps until it is dropped.
    pub fn open(root: &Path, lock: StoreLock) -> Result<Self> {
        Self::open_with(root, lock, Index::open)
    }

    /// Opens the chunks for `cas index rebuild`, however damaged the index: one that
    /// sled finds corrupt is moved aside to `index.damaged-<unix seconds>` (kept, never
    /// read again) and an empty index made in its place. Returns where it went.
    pub fn open_for_rebuild(root: &Path, lock: StoreLock) -> Result<(Self, Option<PathBuf>)> {
        let mut aside = None;
        let store = Self::open_with(root, lock, |path| match Index::open(path) {
            Err(e) if index::is_damage(&e) => {
                tracing::warn!("{e}");
                aside = Some(index::move_aside(path)?);
                Index::open(path)
            }
            opened => opened,
        })?;
        Ok((store, aside))
    }

    fn open_with(
        root: &Path,
        lock: StoreLock,
        open_index: impl FnOnce(&Path) -> Result<Index>,
    ) -> Result<Self> {
        let packs = root.join("packs");
        std::fs::create_dir_all(&packs).map_err(Error::io(&packs, "create packs directory"))?;
        let index = open_index(&root.join("index"))?;
        Ok(ChunkStore {
            root: root.to_path_buf(),
            index,
            writer: Mutex::new(Writer::default()),
            pending: RwLock::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            _lock: lock,
        })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }

    /// Numbers of the pack files present, ascending.
    pub fn pack_numbers(&self) -> Result<Vec<u32>> {
        let dir = self.packs_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir, "list packs"))? {
            let entry = entry.map_err(Error::io(&dir, "list packs"))?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(pack::parse_pack_file_name)
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Index entry of a chunk, committed or not.
    pub fn entry(&self, id: &ChunkId) -> Result<Option<IndexEntry>> {
        let pending = self
            .pending
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied();
        match pending {
            Some(e) => Ok(Some(e)),
            None => self.index.get(id),
        }
    }

    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.entry(id)?.is_some())
    }

    /// Chunks that may stand for a piece known only by its SHA-1 (a piece of a
    /// torrent cas did not make): chunks with that SHA-1, and chunks that, followed by
    /// zeros up to the piece's length, have it (committed padded lookups, see
    /// [`index::PaddedEntry`]); a chunk shorter than its piece is read as its bytes,
    /// then zeros (`store::content::piece_bytes`). A chunk whose SHA-1 (or whose
    /// padded bytes' SHA-1) shows a collision-attack pattern is never returned: it is
    /// found only by its BLAKE3. Unchecked candidates are checked here, once, and the
    /// outcome is kept in the index; a padded lookup whose padded bytes do not hash to
    /// its key is never returned either (fsck reports it).
    pub fn find_by_sha1(&self, sha1: &PieceHash) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        for id in self.index.by_sha1(sha1)? {
            let Some(entry) = self.entry(&id)? else {
                continue;
            };
            let status = match entry.collision {
                Collision::Unchecked => {
                    let status = Collision::check(self.read_at(id, &entry)?.bytes());
                    let pending = self.pending.read().unwrap_or_else(|e| e.into_inner());
                    if !pending.contains_key(&id) {
                        self.index.set_collision(&id, entry, status)?;
                    }
                    status
                }
                known => known,
            };
            if status == Collision::Clean {
                out.push(id);
            }
        }
        for (id, padded) in self.index.padded_by_sha1(sha1)? {
            if out.contains(&id) {
                continue;
            }
            let Some(entry) = self.entry(&id)? else {
                continue;
            };
            if entry.len >= padded.len {
                continue;
            }
            let status = match padded.collision {
                Collision::Unchecked => {
                    let chunk = self.read_at(id, &entry)?;
                    let (status, got) = Collision::check_padded(chunk.bytes(), padded.len as usize);
                    if got != *sha1 {
                        tracing::warn!(
                            "padded lookup {sha1} -> chunk {id} does not hash to its key; run `cas fsck --repair`"
                        );
                        continue;
                    }
                    self.index.set_padded_collision(sha1, &id, padded, status)?;
                    status
                }
                known => known,
            };
            if status == Collision::Clean {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Indexes, at the next commit, a padded lookup: `padded.sha1()` finds the chunk
    /// `padded.id()`, which must be stored (put, or committed) by then.
    pub fn put_padded(&self, padded: Padded) -> Result<()> {
        let mut w = self.lock_writer();
        if !self.contains(&padded.id())? {
            return Err(Error::MissingChunk(padded.id()));
        }
        w.padded.push(padded);
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pack to append to: the current one, or (when there is none or it is full)
    /// the newest pack if it ends where the index says, else a new one.
    fn pack<'w>(&self, w: &'w mut Writer) -> Result<&'w mut PackWriter> {
        if w.pack
            .as_ref()
            .is_none_or(|p| p.len() >= pack::PACK_TARGET_LEN)
        {
            self.commit_locked(w)?;
            let dir = self.packs_dir();
            let committed: HashMap<u32, u64> = self.index.pack_lens()?.into_iter().collect();
            let numbers = self.pack_numbers()?;
            let last = numbers.last().copied();
            let current = w.pack.as_ref().map(|p| p.number);
            // Append to the newest pack only if it ends exactly where the index says it
            // does; anything else (a torn write after a crash) is left for gc and fsck.
            let reuse = last.filter(|n| Some(*n) != current).and_then(|n| {
                let len = std::fs::metadata(dir.join(pack::pack_file_name(n)))
                    .ok()?
                    .len();
                (committed.get(&n) == Some(&len) && len < pack::PACK_TARGET_LEN).then_some((n, len))
            });
            let next = numbers
                .iter()
                .chain(committed.keys())
                .max()
                .map_or(1, |n| n + 1);
            w.pack = Some(match reuse {
                Some((n, len)) => PackWriter::reopen(&dir, n, len)?,
                None => PackWriter::create(&dir, next)?,
            });
        }
        Ok(w.pack.as_mut().expect("pack just set"))
    }

    fn append(&self, w: &mut Writer, chunk: &VerifiedChunk) -> Result<u64> {
        let (at, header) = self.pack(w)?.append(chunk)?;
        self.pending
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chunk.id(), IndexEntry::new(&header, at));
        w.pending_bytes += header.record_len();
        Ok(header.record_len())
    }

    /// Stores a chunk unless it is already stored. Returns the bytes written to the
    /// pack (0 if the chunk was already stored). The chunk is readable at once and
    /// durable after the next [`ChunkStore::commit`].
    pub fn put(&self, chunk: &VerifiedChunk) -> Result<u64> {
        let mut w = self.lock_writer();
        if self.contains(&chunk.id())? {
            return Ok(0);
        }
        self.append_and_commit_when_due(&mut w, chunk)
    }

    /// Stores a chunk again whose stored copy was found damaged (it no longer matches
    /// its BLAKE3): a fresh copy is appended, readable at once, and the index points at
    /// it from the next [`ChunkStore::commit`]. The damaged record is left for gc.
    pub fn put_again(&self, chunk: &VerifiedChunk) -> Result<u64> {
        let mut w = self.lock_writer();
        self.append_and_commit_when_due(&mut w, chunk)
    }

    /// Appends a chunk, committing once enough is pending.
    fn append_and_commit_when_due(&self, w: &mut Writer, chunk: &VerifiedChunk) -> Result<u64> {
        let written = self.append(w, chunk)?;
        if w.pending_bytes >= COMMIT_EVERY {
            self.commit_locked(w)?;
        }
        Ok(written)
    }

    /// Appends a chunk that is already indexed elsewhere (garbage collection moving a
    /// live chunk out of a pack being compacted); its entry is repointed at commit.
    fn relocate(&self, chunk: &VerifiedChunk) -> Result<()> {
        let mut w = self.lock_writer();
        self.append(&mut w, chunk).map(drop)
    }

    /// Commits, then makes the next append go to a new pack file.
    fn start_new_pack(&self) -> Result<()> {
        let mut w = self.lock_writer();
        self.commit_locked(&mut w)?;
        let dir = self.packs_dir();
        let committed = self.index.pack_lens()?.into_iter().map(|(n, _)| n);
        let next = self
            .pack_numbers()?
            .into_iter()
            .chain(committed)
            .max()
            .map_or(1, |n| n + 1);
        w.pack = Some(PackWriter::create(&dir, next)?);
        Ok(())
    }

    /// Number of the pack new chunks go to, if one is open.
    fn current_pack(&self) -> Option<u32> {
        self.lock_writer().pack.as_ref().map(|p| p.number)
    }

    /// Whether chunks were put that are not yet committed.
    pub fn has_pending(&self) -> bool {
        !self
            .pending
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            || !self.lock_writer().padded.is_empty()
    }

    /// Makes every chunk put so far durable, then indexes it. See the module doc.
    pub fn commit(&self) -> Result<()> {
        let mut w = self.lock_writer();
        self.commit_locked(&mut w)
    }

    fn commit_locked(&self, w: &mut Writer) -> Result<()> {
        // Only a holder of the writer lock changes `pending`, so this snapshot stays
        // complete; entries stay visible there until the index has them.
        let entries: Vec<(ChunkId, IndexEntry)> = {
            let pending = self.pending.read().unwrap_or_else(|e| e.into_inner());
            pending.iter().map(|(id, e)| (*id, *e)).collect()
        };
        if entries.is_empty() && w.padded.is_empty() {
            return Ok(());
        }
        let mut batch = IndexBatch::default();
        if !entries.is_empty() {
            let Some(pack) = &w.pack else {
                return Err(Error::Invalid("chunks pending without a pack".into()));
            };
            pack.sync()?;
            for (id, entry) in &entries {
                batch.insert(*id, entry);
            }
            batch.set_pack_len(pack.number, pack.len());
        }
        // A padded lookup goes in the batch that indexes its chunk, or a later one.
        for p in &w.padded {
            let entry = PaddedEntry {
                len: p.piece_len(),
                collision: Collision::Unchecked,
            };
            batch.insert_padded(&p.sha1(), p.id(), &entry);
        }
        self.index.apply(batch)?;
        self.index.flush()?;
        let mut pending = self.pending.write().unwrap_or_else(|e| e.into_inner());
        for (id, _) in &entries {
            pending.remove(id);
        }
        w.pending_bytes = 0;
        w.padded.clear();
        Ok(())
    }

    fn reader(&self, pack: u32) -> Result<(std::sync::Arc<File>, PathBuf)> {
        let path = self.packs_dir().join(pack::pack_file_name(pack));
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = readers.get(&pack) {
            return Ok((f.clone(), path));
        }
        let f = std::sync::Arc::new(File::open(&path).map_err(Error::io(&path, "open pack"))?);
        readers.insert(pack, f.clone());
        Ok((f, path))
    }

    /// Reads a chunk and checks it against its id: only verified bytes leave the store.
    pub fn get(&self, id: &ChunkId) -> Result<VerifiedChunk> {
        let entry = self.entry(id)?.ok_or(Error::MissingChunk(*id))?;
        self.read_at(*id, &entry)
    }

    /// Reads the chunk that `entry` locates, verified against `id`.
    pub fn read_at(&self, id: ChunkId, entry: &IndexEntry) -> Result<VerifiedChunk> {
        let (file, path) = self.reader(entry.at.pack)?;
        pack::read_record(&file, &path, entry.at.offset, Some(entry.digests(id)))
    }

    /// Forgets cached pack handles (after packs were rewritten or removed).
    fn drop_readers(&self) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Location of a committed chunk, for checks.
    pub fn location(&self, id: &ChunkId) -> Result<Option<Location>> {
        Ok(self.entry(id)?.map(|e| e.at))
    }
}

impl Drop for ChunkStore {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!("committing chunks on close: {e}");
        }
    }
}
