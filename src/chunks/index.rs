//! The chunk index: a sled database that says where each chunk's record lives.
//!
//! Keys (one sled tree, so that one batch is atomic):
//! - `c` + BLAKE3 (32) -> postcard [`IndexEntry`]: the chunk's location and digests;
//! - `s` + SHA-1 (20) + BLAKE3 (32) -> empty: lookup by the piece hash torrents carry;
//! - `z` + SHA-1 (20) + BLAKE3 (32) -> postcard [`PaddedEntry`]: a piece longer than
//!   the chunk, the chunk's bytes then zeros up to the entry's length, whose SHA-1 is
//!   the key's (a BEP 47 directory torrent's last piece of a file, which shares the
//!   file's short last chunk);
//! - `p` + pack number (u32 BE) -> u64 LE: the pack's committed length.
//!
//! The index is derived data: `cas index rebuild` recreates it from the packs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chunk::{Collision, Digests};
use super::pack::{Location, RecordHeader};
use crate::{ChunkId, Error, PieceHash, Result};

/// What the index knows of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub sha1: PieceHash,
    pub collision: Collision,
    pub len: u32,
    pub stored: u32,
    pub at: Location,
}

impl IndexEntry {
    pub fn new(header: &RecordHeader, at: Location) -> Self {
        IndexEntry {
            sha1: header.digests.sha1,
            collision: header.digests.collision,
            len: header.len,
            stored: header.stored,
            at,
        }
    }

    pub fn digests(&self, id: ChunkId) -> Digests {
        Digests {
            id,
            sha1: self.sha1,
            collision: self.collision,
        }
    }
}

/// A padded lookup: the chunk, followed by zeros up to `len` bytes, is a piece whose
/// SHA-1 is the key's. Its collision state is that of the padded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaddedEntry {
    pub len: u32,
    pub collision: Collision,
}

fn chunk_key(id: &ChunkId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b'c';
    k[1..].copy_from_slice(&id.0);
    k
}

fn sha1_key(sha1: &PieceHash, id: &ChunkId) -> [u8; 53] {
    let mut k = [0u8; 53];
    k[0] = b's';
    k[1..21].copy_from_slice(&sha1.0);
    k[21..].copy_from_slice(&id.0);
    k
}

fn padded_key(sha1: &PieceHash, id: &ChunkId) -> [u8; 53] {
    let mut k = sha1_key(sha1, id);
    k[0] = b'z';
    k
}

fn split_lookup_key(k: &[u8]) -> Option<(PieceHash, ChunkId)> {
    Some((
        PieceHash::from_slice(k.get(1..21)?)?,
        ChunkId::from_slice(k.get(21..)?)?,
    ))
}

fn pack_key(pack: u32) -> [u8; 5] {
    let mut k = [b'p', 0, 0, 0, 0];
    k[1..].copy_from_slice(&pack.to_be_bytes());
    k
}

/// The sled-backed chunk index.
#[derive(Clone)]
pub struct Index {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
}

/// A set of index changes applied atomically.
#[derive(Default)]
pub struct IndexBatch {
    batch: sled::Batch,
    pub inserted: usize,
}

impl IndexBatch {
    pub fn insert(&mut self, id: ChunkId, entry: &IndexEntry) {
        let value = postcard::to_stdvec(entry).expect("index entry serialises");
        self.batch.insert(&chunk_key(&id)[..], value);
        self.batch.insert(&sha1_key(&entry.sha1, &id)[..], &[][..]);
        self.inserted += 1;
    }

    pub fn remove(&mut self, id: ChunkId, entry: &IndexEntry) {
        self.batch.remove(&chunk_key(&id)[..]);
        self.batch.remove(&sha1_key(&entry.sha1, &id)[..]);
    }

    /// A padded lookup of chunk `id` (see [`PaddedEntry`]).
    pub fn insert_padded(&mut self, sha1: &PieceHash, id: ChunkId, entry: &PaddedEntry) {
        let value = postcard::to_stdvec(entry).expect("padded entry serialises");
        self.batch.insert(&padded_key(sha1, &id)[..], value);
    }

    pub fn remove_padded(&mut self, sha1: &PieceHash, id: ChunkId) {
        self.batch.remove(&padded_key(sha1, &id)[..]);
    }

    pub fn set_pack_len(&mut self, pack: u32, len: u64) {
        self.batch
            .insert(&pack_key(pack)[..], &len.to_le_bytes()[..]);
    }

    pub fn remove_pack(&mut self, pack: u32) {
        self.batch.remove(&pack_key(pack)[..]);
    }
}

impl Index {
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(Error::index(path))?;
        let tree = db.open_tree("chunks").map_err(Error::index(path))?;
        Ok(Index {
            path: path.to_path_buf(),
            db,
            tree,
        })
    }

    fn err(&self) -> impl FnOnce(sled::Error) -> Error + use<> {
        let path = self.path.clone();
        Error::index(path)
    }

    fn decode(&self, value: &[u8]) -> Result<IndexEntry> {
        postcard::from_bytes(value).map_err(|err| Error::Decode {
            what: format!("index entry in {}", self.path.display()),
            err,
        })
    }

    pub fn get(&self, id: &ChunkId) -> Result<Option<IndexEntry>> {
        match self.tree.get(chunk_key(id)).map_err(self.err())? {
            Some(v) => Ok(Some(self.decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Chunks stored under one SHA-1 (more than one only for colliding pieces).
    pub fn by_sha1(&self, sha1: &PieceHash) -> Result<Vec<ChunkId>> {
        let mut prefix = [0u8; 21];
        prefix[0] = b's';
        prefix[1..].copy_from_slice(&sha1.0);
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| {
                let k = k.map_err(self.err())?;
                Ok(ChunkId::from_slice(&k[21..]).expect("key length fixed"))
            })
            .collect()
    }

    /// Padded lookups under one SHA-1: (chunk, entry).
    pub fn padded_by_sha1(&self, sha1: &PieceHash) -> Result<Vec<(ChunkId, PaddedEntry)>> {
        let mut prefix = [0u8; 21];
        prefix[0] = b'z';
        prefix[1..].copy_from_slice(&sha1.0);
        self.tree
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(self.err())?;
                let (_, id) = split_lookup_key(&k).ok_or_else(|| self.bad_key())?;
                Ok((id, self.decode_padded(&v)?))
            })
            .collect()
    }

    /// Every padded lookup, as (SHA-1, chunk id, entry).
    pub fn padded_keys(
        &self,
    ) -> impl Iterator<Item = Result<(PieceHash, ChunkId, PaddedEntry)>> + '_ {
        self.tree.scan_prefix([b'z']).map(move |kv| {
            let (k, v) = kv.map_err(self.err())?;
            let (sha1, id) = split_lookup_key(&k).ok_or_else(|| self.bad_key())?;
            Ok((sha1, id, self.decode_padded(&v)?))
        })
    }

    fn decode_padded(&self, value: &[u8]) -> Result<PaddedEntry> {
        postcard::from_bytes(value).map_err(|err| Error::Decode {
            what: format!("padded lookup in {}", self.path.display()),
            err,
        })
    }

    fn bad_key(&self) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason: "index key of wrong length".into(),
        }
    }

    /// Records the outcome of a collision check of padded bytes.
    pub fn set_padded_collision(
        &self,
        sha1: &PieceHash,
        id: &ChunkId,
        mut entry: PaddedEntry,
        c: Collision,
    ) -> Result<()> {
        entry.collision = c;
        let value = postcard::to_stdvec(&entry).expect("padded entry serialises");
        self.tree
            .insert(padded_key(sha1, id), value)
            .map_err(self.err())?;
        Ok(())
    }

    /// Every chunk in the index.
    pub fn entries(&self) -> impl Iterator<Item = Result<(ChunkId, IndexEntry)>> + '_ {
        self.tree.scan_prefix([b'c']).map(move |kv| {
            let (k, v) = kv.map_err(self.err())?;
            let id = ChunkId::from_slice(&k[1..]).ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                reason: "index key of wrong length".into(),
            })?;
            Ok((id, self.decode(&v)?))
        })
    }

    /// Every `s` key, as (SHA-1, chunk id), for consistency checks.
    pub fn sha1_keys(&self) -> impl Iterator<Item = Result<(PieceHash, ChunkId)>> + '_ {
        self.tree.scan_prefix([b's']).keys().map(move |k| {
            let k = k.map_err(self.err())?;
            let (Some(s), Some(c)) = (
                PieceHash::from_slice(&k[1..21]),
                ChunkId::from_slice(&k[21..]),
            ) else {
                return Err(Error::Corrupt {
                    path: self.path.clone(),
                    reason: "index key of wrong length".into(),
                });
            };
            Ok((s, c))
        })
    }

    /// Records the outcome of a collision check in a committed entry.
    pub fn set_collision(&self, id: &ChunkId, mut entry: IndexEntry, c: Collision) -> Result<()> {
        entry.collision = c;
        let value = postcard::to_stdvec(&entry).expect("index entry serialises");
        self.tree.insert(chunk_key(id), value).map_err(self.err())?;
        Ok(())
    }

    pub fn remove_sha1_key(&self, sha1: &PieceHash, id: &ChunkId) -> Result<()> {
        self.tree.remove(sha1_key(sha1, id)).map_err(self.err())?;
        Ok(())
    }

    /// Committed length of each pack the index knows.
    pub fn pack_lens(&self) -> Result<Vec<(u32, u64)>> {
        self.tree
            .scan_prefix([b'p'])
            .map(|kv| {
                let (k, v) = kv.map_err(self.err())?;
                let pack = u32::from_be_bytes(k[1..5].try_into().expect("key length fixed"));
                let len =
                    u64::from_le_bytes(v.as_ref().try_into().map_err(|_| Error::Corrupt {
                        path: self.path.clone(),
                        reason: "pack length of wrong size".into(),
                    })?);
                Ok((pack, len))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tree.scan_prefix([b'c']).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn apply(&self, batch: IndexBatch) -> Result<()> {
        self.tree.apply_batch(batch.batch).map_err(self.err())
    }

    /// Makes every applied batch durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(self.err())?;
        super::synced(super::Synced::Index(&self.path));
        Ok(())
    }

    /// Removes every key (used before a rebuild).
    pub fn clear(&self) -> Result<()> {
        self.tree.clear().map_err(self.err())
    }
}
