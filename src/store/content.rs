//! A torrent's content read back from its chunks, and a tree's manifest from its
//! torrent. Every byte returned here came through [`Store::get`] or
//! [`Store::read_at`], so it was verified against its chunk id.

use std::io::Write;

use crate::catalog::TorrentRecord;
use crate::manifest::Manifest;
use crate::meta::parse::Metainfo;
use crate::store::Store;
use crate::{ChunkId, Error, InfoHash, Result, TreeId};

/// A torrent record that must exist.
pub fn torrent(store: &Store, ih: &InfoHash) -> Result<TorrentRecord> {
    store
        .catalog()
        .torrent(ih)?
        .ok_or_else(|| Error::NotFound(format!("torrent {ih} is not in the store")))
}

/// Where content goes: bytes, and runs of zeros that a sink may write as holes.
pub trait Sink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    fn zeros(&mut self, len: u64) -> std::io::Result<()>;
}

/// Any writer is a sink that writes zeros as bytes.
pub struct WriteSink<W>(pub W);

impl<W: Write> Sink for WriteSink<W> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }
    fn zeros(&mut self, mut len: u64) -> std::io::Result<()> {
        let buf = [0u8; 64 << 10];
        while len > 0 {
            let n = len.min(buf.len() as u64) as usize;
            self.0.write_all(&buf[..n])?;
            len -= n as u64;
        }
        Ok(())
    }
}

/// Bytes `within..within + take` of a piece, given the bytes of the chunk that holds
/// it: the chunk's bytes, then the number of zeros that follow them. A chunk may be
/// shorter than its piece, the rest of the piece being zeros (the piece was matched
/// against its hash with them when it was recorded). Every reader of a piece
/// (export, the mount, the engine, content read back) goes through here.
pub fn piece_bytes(chunk: &[u8], within: usize, take: usize) -> (&[u8], usize) {
    let from = within.min(chunk.len());
    let have = (chunk.len() - from).min(take);
    (&chunk[from..from + have], take - have)
}

/// Sends a torrent's content (pad files included) to `out`; all-zero pieces go as
/// [`Sink::zeros`] without being read.
pub fn write_content(store: &Store, record: &TorrentRecord, out: &mut dyn Sink) -> Result<u64> {
    let mut left = record.length;
    for id in &record.pieces {
        let take = left.min(u64::from(record.piece_length));
        let entry = store.entry(id)?.ok_or(Error::MissingChunk(*id))?;
        let sent = if entry.stored == 0 {
            out.zeros(take)
        } else {
            let chunk = store.read_at(*id, &entry)?;
            let (data, zeros) = piece_bytes(chunk.bytes(), 0, take as usize);
            out.data(data).and_then(|()| out.zeros(zeros as u64))
        };
        sent.map_err(Error::io("<output>", "write"))?;
        left -= take;
    }
    Ok(record.length - left)
}

/// Reads a whole torrent's content into memory (small things: manifests).
pub fn content_bytes(store: &Store, record: &TorrentRecord) -> Result<Vec<u8>> {
    let mut out = WriteSink(Vec::with_capacity(record.length as usize));
    write_content(store, record, &mut out)?;
    Ok(out.0)
}

/// Loads and validates the manifest of a tree.
pub fn load_manifest(store: &Store, tree: &TreeId) -> Result<Manifest> {
    let record = store
        .catalog()
        .tree(tree)?
        .ok_or_else(|| Error::NotFound(format!("tree {tree} is not in the store")))?;
    let torrent = torrent(store, &record.manifest)?;
    let bytes = content_bytes(store, &torrent)?;
    let where_ = || store.root().join("trees").join(tree.to_hex());
    if Manifest::id_of(&bytes) != *tree {
        return Err(Error::Corrupt {
            path: where_(),
            reason: "manifest bytes do not hash to the tree id".into(),
        });
    }
    Manifest::decode(&bytes).map_err(|e| Error::Corrupt {
        path: where_(),
        reason: e.to_string(),
    })
}

/// The chunk of each piece of a torrent that the store holds: from the catalog record
/// for a torrent of the store (checking each chunk is still there), else by SHA-1.
pub fn held_pieces(store: &Store, meta: &Metainfo) -> Result<Vec<Option<ChunkId>>> {
    let mut held = Vec::with_capacity(meta.pieces.len());
    match store.catalog().torrent(&meta.info_hash)? {
        Some(record) if record.pieces.len() == meta.pieces.len() => {
            for id in record.pieces {
                held.push(store.contains(&id)?.then_some(id));
            }
        }
        _ => {
            for sha1 in &meta.pieces {
                held.push(store.find_by_sha1(sha1)?.first().copied());
            }
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::piece_bytes;

    #[test]
    fn a_chunk_shorter_than_its_piece_reads_as_its_bytes_then_zeros() {
        assert_eq!(piece_bytes(b"abcdef", 0, 6), (&b"abcdef"[..], 0));
        assert_eq!(piece_bytes(b"abcdef", 2, 3), (&b"cde"[..], 0));
        assert_eq!(piece_bytes(b"abcdef", 4, 5), (&b"ef"[..], 3));
        assert_eq!(piece_bytes(b"abc", 5, 4), (&b""[..], 4));
    }
}
