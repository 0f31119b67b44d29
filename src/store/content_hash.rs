//! The BLAKE3 of a download's content, hashed as pieces arrive.
//!
//! A single-file torrent named by 64 hex digits may be one of cas's own: its name is
//! the BLAKE3 of its content, which must be checked before it is recorded as such.
//! Hashing pieces in order as they are stored saves reading the whole download back
//! at the end. Pieces that arrive early wait in memory (a bounded amount); pieces the
//! store already held are read when their turn comes. When the bound is exceeded the
//! hash is given up and worked out at the end instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chunks::chunk::VerifiedChunk;
use crate::{ChunkId, Store};

/// Bytes of early pieces kept waiting for their turn.
const MAX_WAITING: u64 = 128 << 20;

/// An in-order BLAKE3 of a torrent's content.
pub struct InOrder {
    hasher: blake3::Hasher,
    /// The next piece to hash.
    next: usize,
    waiting: BTreeMap<usize, Arc<VerifiedChunk>>,
    waiting_bytes: u64,
    given_up: bool,
}

impl InOrder {
    pub fn new() -> Self {
        InOrder {
            hasher: blake3::Hasher::new(),
            next: 0,
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            given_up: false,
        }
    }

    /// Takes piece `piece` (just received), then hashes every piece whose turn has
    /// come: received ones from memory, held ones (`held(i)`) from the store.
    /// `piece_len(i)` is the length of piece `i` in the torrent.
    pub fn add(
        &mut self,
        store: &Store,
        piece: usize,
        chunk: Arc<VerifiedChunk>,
        pieces: usize,
        held: impl Fn(usize) -> Option<ChunkId>,
        piece_len: impl Fn(usize) -> usize,
    ) {
        if self.given_up {
            return;
        }
        self.waiting_bytes += chunk.len() as u64;
        self.waiting.insert(piece, chunk);
        while self.next < pieces {
            let chunk = match self.waiting.remove(&self.next) {
                Some(c) => {
                    self.waiting_bytes -= c.len() as u64;
                    c
                }
                None => match held(self.next).map(|id| store.get(&id)) {
                    Some(Ok(c)) => Arc::new(c),
                    _ => break,
                },
            };
            // A chunk shorter than its piece is its bytes, then zeros.
            let (data, zeros) = super::content::piece_bytes(chunk.bytes(), 0, piece_len(self.next));
            self.hasher.update(data);
            self.hasher.update(&vec![0; zeros]);
            self.next += 1;
        }
        if self.waiting_bytes > MAX_WAITING {
            self.give_up();
        }
    }

    fn give_up(&mut self) {
        self.given_up = true;
        self.waiting.clear();
        self.waiting_bytes = 0;
    }

    /// The content hash, if every piece went through in order.
    pub fn finish(&self, pieces: usize) -> Option<blake3::Hash> {
        (!self.given_up && self.next == pieces).then(|| self.hasher.finalize())
    }
}

impl Default for InOrder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_out_of_order_and_from_the_store_hash_as_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Some(16 << 10)).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pieces: Vec<&[u8]> = data.chunks(16 << 10).collect();
        // Piece 2 is already stored; the others arrive in a scrambled order.
        let held_chunk = VerifiedChunk::hash(pieces[2].to_vec());
        store.put(&held_chunk).unwrap();
        let mut held: Vec<Option<ChunkId>> = vec![None; pieces.len()];
        held[2] = Some(held_chunk.id());
        let mut h = InOrder::new();
        for i in [5, 1, 0, 6, 3, 4] {
            let chunk = Arc::new(VerifiedChunk::hash(pieces[i].to_vec()));
            held[i] = Some(chunk.id());
            let now = held.clone();
            h.add(
                &store,
                i,
                chunk,
                pieces.len(),
                |j| now[j],
                |j| pieces[j].len(),
            );
        }
        assert_eq!(h.finish(pieces.len()), Some(blake3::hash(&data)));
    }
}
