//! The receiving half of a torrent's storage: blocks staged per piece, then each
//! piece hashed and, if its SHA-1 is the torrent's, stored (its data alone when it ends
//! in pad files, again when its stored copy was found damaged), and the torrent
//! recorded once it is whole.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::Inner;
use crate::chunks::chunk::{Padded, VerifiedChunk};
use crate::store::finish;
use crate::ChunkId;

impl Inner {
    pub(super) fn finish_if_complete(&self) -> anyhow::Result<()> {
        // Called for every piece stored: a piece still missing is looked for first,
        // from the end, where it mostly is (pieces come mostly in order), before the
        // list of chunks is made.
        let pieces: Vec<ChunkId> = {
            let held = self.held.read().unwrap_or_else(|e| e.into_inner());
            if held.iter().rev().any(Option::is_none) {
                return Ok(());
            }
            held.iter().flatten().copied().collect()
        };
        if self.finished.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.store.catalog().has_torrent(&self.ih) {
            return Ok(());
        }
        let hash = self.content.as_ref().and_then(|c| {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(self.meta.pieces.len())
        });
        let r = finish::record(&self.store, &self.meta, pieces, hash);
        if r.is_err() {
            self.finished.store(false, Ordering::Release);
        }
        r.map(drop).map_err(Into::into)
    }

    /// The ranges of piece `piece` that are pad files, relative to the piece.
    fn pads(&self, piece: usize) -> Vec<(u64, u64)> {
        let len = self.meta.piece_len(piece);
        let start = piece as u64 * u64::from(self.meta.piece_length);
        let mut out = Vec::new();
        for f in self.meta.files.iter().filter(|f| f.pad) {
            let (a, b) = (f.offset.max(start), (f.offset + f.length).min(start + len));
            if a < b {
                out.push((a - start, b - start));
            }
        }
        out
    }

    /// Takes `data` for bytes starting at `at` in the torrent; stores each piece that
    /// this completes and whose hash is right.
    pub(super) fn write(&self, mut at: u64, mut data: &[u8]) -> anyhow::Result<()> {
        let plen = u64::from(self.meta.piece_length);
        while !data.is_empty() {
            let piece = (at / plen) as usize;
            let within = at % plen;
            let take = data.len().min((plen - within) as usize);
            let (now, rest) = data.split_at(take);
            (at, data) = (at + take as u64, rest);
            if piece >= self.meta.pieces.len() {
                bail!("write past the end of the torrent");
            }
            if self.held.read().unwrap_or_else(|e| e.into_inner())[piece].is_some() {
                continue;
            }
            let done = self
                .staged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(
                    piece,
                    self.meta.piece_len(piece),
                    || self.pads(piece),
                    within,
                    now,
                )?;
            if let Some(bytes) = done {
                self.complete_piece(piece, bytes)?;
            }
        }
        Ok(())
    }

    /// A verified piece that is data then BEP 47 padding: its data alone, and the
    /// padded lookup that finds it by the piece's SHA-1. Any other piece as it is.
    fn trim_padding(&self, piece: usize, chunk: VerifiedChunk) -> (VerifiedChunk, Option<Padded>) {
        let Some(data) = self.meta.data_before_pad(piece) else {
            return (chunk, None);
        };
        let data = (data as usize).min(chunk.len());
        if data == chunk.len() || !chunk.bytes()[data..].iter().all(|&b| b == 0) {
            return (chunk, None);
        }
        // The piece was hashed (its SHA-1 checked); only its data is hashed now.
        let short = VerifiedChunk::hash(chunk.bytes()[..data].to_vec());
        match Padded::of(&short, &chunk) {
            Some(padded) => (short, Some(padded)),
            None => (chunk, None),
        }
    }

    fn complete_piece(&self, piece: usize, bytes: Vec<u8>) -> anyhow::Result<()> {
        let chunk = VerifiedChunk::hash(bytes);
        if chunk.sha1() != self.meta.pieces[piece] {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "torrent {}: piece {piece} failed its hash; dropped",
                self.ih
            );
            return Ok(());
        }
        // A piece that ends in pad files (BEP 47) is stored as its data without the
        // zeros: the chunk a file torrent of the same file has for its last piece, found
        // by this piece's SHA-1 through a padded lookup.
        let (chunk, padded) = self.trim_padding(piece, chunk);
        let len = chunk.len() as u64;
        // A piece found damaged is stored again: its chunk is indexed, but unreadable.
        let again = self
            .damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&piece);
        // Readable at once; made durable by the engine's committer (see the module doc).
        if again {
            self.store.put_again(&chunk)
        } else {
            self.store.put(&chunk)
        }
        .context("storing a received piece")?;
        if again {
            tracing::info!(
                "torrent {}: piece {piece}, found damaged, stored again",
                self.ih
            );
        }
        if let Some(p) = padded {
            self.store
                .chunks()
                .put_padded(p)
                .context("indexing a received padded piece")?;
        }
        let id = chunk.id();
        let chunk = self.cache.insert(Arc::new(chunk));
        self.held.write().unwrap_or_else(|e| e.into_inner())[piece] = Some(id);
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&piece);
        if let Some(c) = &self.content {
            let held = |i: usize| self.held.read().unwrap_or_else(|e| e.into_inner())[i];
            let piece_len = |i: usize| self.meta.piece_len(i) as usize;
            c.lock().unwrap_or_else(|e| e.into_inner()).add(
                &self.store,
                piece,
                chunk,
                self.meta.pieces.len(),
                held,
                piece_len,
            );
        }
        self.counters.stored.fetch_add(len, Ordering::Relaxed);
        // The store, not librqbit's count, says when the torrent is whole: librqbit
        // can lose count of a piece stored here (see `fetch_all` in `get.rs`). The
        // piece is stored either way; librqbit's own completion tries again.
        if let Err(e) = self.finish_if_complete() {
            tracing::warn!("torrent {}: recording it complete: {e:#}", self.ih);
        }
        Ok(())
    }
}
