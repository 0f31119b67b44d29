//! Pieces being received, held in memory until their last byte arrives, then hashed
//! and stored whole (or dropped). A peer decides what arrives, so what is held is
//! bounded: past [`Staging`]'s limit the piece written to least recently is dropped
//! (its blocks are asked for again, since librqbit's check of that piece then fails).

use std::collections::HashMap;
use std::time::Instant;

/// Bytes of pieces held by one torrent's staging unless told otherwise: 128 MiB,
/// and always room for two pieces.
pub const DEFAULT_LIMIT: u64 = 128 << 20;

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StagingError {
    #[error("write past the end of piece {piece} ({len} bytes)")]
    PastEnd { piece: usize, len: u64 },
}

/// A piece being received.
struct Staged {
    /// What arrived, from the start of the piece to the furthest byte written: the
    /// room for the whole piece is reserved, not zeroed (blocks come mostly in order,
    /// and a gap is zeroed only when a later block skips over it).
    bytes: Vec<u8>,
    /// The piece's length.
    len: u64,
    /// Byte ranges written so far (pad files count as written), sorted, disjoint.
    covered: Vec<(u64, u64)>,
    /// When a block last arrived.
    last: Instant,
}

impl Staged {
    fn cover(&mut self, start: u64, end: u64) {
        self.covered.push((start, end));
        self.covered.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.covered.len());
        for &(s, e) in &self.covered {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.covered = merged;
    }

    fn complete(&self) -> bool {
        self.covered == [(0, self.len)]
    }

    /// Writes `data` at `at`.
    fn put(&mut self, at: usize, data: &[u8]) {
        let bytes = &mut self.bytes;
        if bytes.len() < at {
            bytes.resize(at, 0);
        }
        let inside = (bytes.len() - at).min(data.len());
        bytes[at..at + inside].copy_from_slice(&data[..inside]);
        bytes.extend_from_slice(&data[inside..]);
    }
}

/// The pieces of one torrent being received.
pub struct Staging {
    pieces: HashMap<usize, Staged>,
    /// Bytes of every piece held.
    held: u64,
    limit: u64,
    /// Pieces dropped to keep within the limit.
    pub dropped: u64,
}

impl Staging {
    /// Staging that holds at most `limit` bytes, or two pieces of `piece_length` if
    /// that is more.
    pub fn new(limit: u64, piece_length: u64) -> Self {
        Staging {
            pieces: HashMap::new(),
            held: 0,
            limit: limit.max(2 * piece_length),
            dropped: 0,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Writes `data` at `within` of piece `piece`, which is `len` bytes long and whose
    /// ranges `pads` (pad files) count as written already. Returns the piece's bytes
    /// when this write completes it.
    pub fn write(
        &mut self,
        piece: usize,
        len: u64,
        pads: impl FnOnce() -> Vec<(u64, u64)>,
        within: u64,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, StagingError> {
        let end = within + data.len() as u64;
        if end > len {
            return Err(StagingError::PastEnd { piece, len });
        }
        if !self.pieces.contains_key(&piece) {
            self.make_room(len);
            let mut s = Staged {
                bytes: Vec::with_capacity(len as usize),
                len,
                covered: Vec::new(),
                last: Instant::now(),
            };
            for (a, b) in pads() {
                s.cover(a, b);
            }
            self.held += len;
            self.pieces.insert(piece, s);
        }
        let Some(s) = self.pieces.get_mut(&piece) else {
            return Ok(None);
        };
        s.put(within as usize, data);
        s.cover(within, end);
        s.last = Instant::now();
        if !s.complete() {
            return Ok(None);
        }
        // What was never written is pad files at the end, read as zeros.
        let done = self.pieces.remove(&piece).map(|mut s| {
            s.bytes.resize(len as usize, 0);
            s.bytes
        });
        self.held -= len;
        Ok(done)
    }

    /// Drops the pieces written to least recently until `len` more bytes fit.
    fn make_room(&mut self, len: u64) {
        while self.held + len > self.limit {
            let Some((&oldest, _)) = self.pieces.iter().min_by_key(|(_, s)| s.last) else {
                return;
            };
            if let Some(s) = self.pieces.remove(&oldest) {
                self.held -= s.len;
                self.dropped += 1;
                tracing::debug!(
                    "dropped staged piece {oldest} to stay within {} bytes",
                    self.limit
                );
            }
        }
    }

    /// Pieces some of whose blocks arrived within `recent`, and not all.
    pub fn receiving(&self, recent: std::time::Duration) -> Vec<usize> {
        self.pieces
            .iter()
            .filter(|(_, s)| s.last.elapsed() < recent)
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_is_returned_once_every_byte_arrived_in_any_order() {
        let mut s = Staging::new(DEFAULT_LIMIT, 16);
        assert_eq!(s.write(3, 10, Vec::new, 5, b"fghij"), Ok(None));
        assert_eq!(s.write(3, 10, Vec::new, 0, b"abc"), Ok(None));
        assert_eq!(s.held_bytes(), 10);
        assert_eq!(
            s.write(3, 10, Vec::new, 2, b"cde"),
            Ok(Some(b"abcdefghij".to_vec()))
        );
        assert_eq!(s.held_bytes(), 0);
        assert!(s.receiving(std::time::Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn a_block_sent_twice_and_a_block_past_a_gap_leave_the_right_bytes() {
        let mut s = Staging::new(DEFAULT_LIMIT, 16);
        assert_eq!(s.write(0, 9, Vec::new, 6, b"ghi"), Ok(None));
        assert_eq!(s.write(0, 9, Vec::new, 0, b"abc"), Ok(None));
        assert_eq!(s.write(0, 9, Vec::new, 0, b"abc"), Ok(None));
        assert_eq!(
            s.write(0, 9, Vec::new, 3, b"def"),
            Ok(Some(b"abcdefghi".to_vec()))
        );
    }

    #[test]
    fn pad_ranges_count_as_written_and_read_as_zeros() {
        let mut s = Staging::new(DEFAULT_LIMIT, 16);
        let got = s.write(0, 8, || vec![(4, 8)], 0, b"abcd").unwrap();
        assert_eq!(got, Some(b"abcd\0\0\0\0".to_vec()));
    }

    #[test]
    fn a_write_past_the_piece_is_refused() {
        let mut s = Staging::new(DEFAULT_LIMIT, 16);
        assert_eq!(
            s.write(1, 8, Vec::new, 6, b"xyz"),
            Err(StagingError::PastEnd { piece: 1, len: 8 })
        );
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn a_peer_starting_many_large_pieces_is_held_to_the_limit() {
        // A peer sends the first block of a hundred 64 MiB pieces: what is staged
        // stays within the limit, the oldest pieces go first, and a piece that is
        // then finished still comes out whole.
        let piece = 64u64 << 20;
        let mut s = Staging::new(DEFAULT_LIMIT, piece);
        for p in 0..100 {
            assert_eq!(s.write(p, piece, Vec::new, 0, &[1; 16]), Ok(None));
            assert!(s.held_bytes() <= 2 * piece, "{} bytes held", s.held_bytes());
        }
        assert_eq!(s.dropped, 98);
        let last = s.write(99, piece, Vec::new, 16, &vec![2; piece as usize - 16]);
        let bytes = last.unwrap().expect("piece 99 completes");
        assert_eq!(&bytes[..16], &[1; 16]);
        assert!(bytes[16..].iter().all(|b| *b == 2));
    }
}
