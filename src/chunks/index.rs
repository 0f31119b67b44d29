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

/// Removes the `snap.<lsn>.generating` files a snapshot write that failed (a full
/// disk, a crash) leaves: sled 0.34 writes a snapshot there on every open and renames it
/// into place once synced, yet takes a leftover one for the newest snapshot and then
/// finds the index corrupt.
fn remove_unfinished_snapshots(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, "list the index")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(path, "list the index"))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(Error::io(&p, "remove an unfinished snapshot"))?;
        }
    }
    Ok(())
}

/// Whether an error opening or reading the index says its bytes are damaged (rather
/// than, say, the disk being full or the files unreadable), so that a rebuild may
/// replace it.
pub fn is_damage(e: &Error) -> bool {
    match e {
        Error::Index { err, .. } => !matches!(err, sled::Error::Io(_)),
        Error::Corrupt { .. } | Error::Decode { .. } => true,
        _ => false,
    }
}

/// Moves a damaged index directory aside to `index.damaged-<unix seconds>` next to it
/// (a number added if that is taken); returns the new path.
pub fn move_aside(path: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(|| "index".into(), |n| n.to_string_lossy().into_owned());
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut to = parent.join(format!("{name}.damaged-{secs}"));
    let mut n = 1;
    while to.exists() {
        to = parent.join(format!("{name}.damaged-{secs}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &to).map_err(Error::io(path, "move the damaged index aside"))?;
    super::sync_dir(parent)?;
    Ok(to)
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
        remove_unfinished_snapshots(path)?;
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl FnOnce(sled::Error) -> Error + use<> {
        let path = self.path.clone();
        Error::index(path)
    }

    /// Damage found in the index's own bytes: named, with the fix.
    fn damaged(&self, what: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason: format!("{what}; `cas index rebuild` recreates it from the packs"),
        }
    }

    fn decode(&self, value: &[u8]) -> Result<IndexEntry> {
        postcard::from_bytes(value)
            .map_err(|e| self.damaged(format_args!("an index entry does not decode: {e}")))
    }

    /// The chunk id that ends an `s` key (`s` + SHA-1 + BLAKE3).
    fn sha1_key_parts(&self, k: &[u8]) -> Result<(PieceHash, ChunkId)> {
        match (
            k.get(1..21).and_then(PieceHash::from_slice),
            k.get(21..).and_then(ChunkId::from_slice),
        ) {
            (Some(s), Some(c)) if k.first() == Some(&b's') => Ok((s, c)),
            _ => Err(self.damaged(format_args!(
                "a SHA-1 lookup key of {} bytes (not 53)",
                k.len()
            ))),
        }
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
                Ok(self.sha1_key_parts(&k)?.1)
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
            let id = ChunkId::from_slice(&k[1..]).ok_or_else(|| {
                self.damaged(format_args!("a chunk key of {} bytes (not 33)", k.len()))
            })?;
            Ok((id, self.decode(&v)?))
        })
    }

    /// Every `s` key, as (SHA-1, chunk id), for consistency checks.
    pub fn sha1_keys(&self) -> impl Iterator<Item = Result<(PieceHash, ChunkId)>> + '_ {
        self.tree.scan_prefix([b's']).keys().map(move |k| {
            let k = k.map_err(self.err())?;
            self.sha1_key_parts(&k)
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
                let pack = k
                    .get(1..)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| {
                        self.damaged(format_args!("a pack key of {} bytes (not 5)", k.len()))
                    })?;
                let len = <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_le_bytes)
                    .map_err(|_| {
                        self.damaged(format_args!(
                            "the length of pack {pack} is {} bytes (not 8)",
                            v.len()
                        ))
                    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each malformed key, written where a well-formed one of its kind goes, makes the
    /// reads over that kind return an error naming the index and the fix; none panics.
    #[test]
    fn malformed_keys_are_errors_not_panics() {
        let sha1 = PieceHash([7; 20]);
        let cases: &[(&str, &[u8])] = &[
            ("chunk key too short", b"c\x01\x02"),
            ("sha1 key too short", b"s\x07\x07"),
            ("sha1 key with a short chunk id", &{
                let mut k = vec![b's'];
                k.extend([7u8; 20]);
                k.extend([1u8; 5]);
                k
            }),
            ("pack key too short", b"p\x01"),
        ];
        let mut failures = Vec::new();
        for (what, key) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index");
            let index = Index::open(&path).unwrap();
            index.tree.insert(*key, &b"x"[..]).unwrap();
            let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                [
                    index.entries().find_map(Result::err),
                    index.sha1_keys().find_map(Result::err),
                    index.by_sha1(&sha1).err(),
                    index.pack_lens().err(),
                ]
            }));
            let Ok(results) = results else {
                failures.push(format!("{what}: reading the index panicked"));
                continue;
            };
            let errors: Vec<String> = results
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect();
            if errors.is_empty() {
                failures.push(format!("{what}: no error"));
            }
            for e in errors {
                if !(e.contains(&path.display().to_string()) && e.contains("`cas index rebuild`")) {
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
