//! The verified chunk: the only form in which bytes enter or leave the store.
//!
//! A [`VerifiedChunk`] can be made in two ways only: by hashing bytes
//! ([`VerifiedChunk::hash`], which computes both digests from the bytes
//! themselves) or by checking bytes read back against the id they were stored
//! under ([`VerifiedChunk::verify`]). The pack writer takes nothing else, so
//! "unverified bytes in the store" cannot be written down.

use sha1::Digest as _;
use sha1_checked::CollisionResult;

use crate::{ChunkId, PieceHash};

/// Whether a chunk's SHA-1 computation shows a collision-attack pattern.
///
/// Detection (`sha1-checked`, the counter-cryptanalysis of SHAttered and SHA-mbles)
/// costs several times a plain SHA-1, and it matters only where a chunk could be
/// matched by its SHA-1 alone ([`crate::Store::find_by_sha1`]): dedup by BLAKE3 never
/// conflates two pieces. So chunks are stored `Unchecked` and checked on the first
/// SHA-1-only lookup that finds them; a `Detected` chunk is never returned by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Collision {
    Unchecked,
    Clean,
    Detected,
}

impl Collision {
    /// Runs SHA-1 collision detection over `bytes`.
    pub fn check(bytes: &[u8]) -> Self {
        let mut hasher = sha1_checked::Sha1::builder().safe_hash(false).build();
        sha1_checked::Digest::update(&mut hasher, bytes);
        match hasher.try_finalize() {
            CollisionResult::Ok(_) => Collision::Clean,
            _ => Collision::Detected,
        }
    }

    /// Runs SHA-1 collision detection over `bytes` followed by zeros up to `len`
    /// bytes (a padded piece), and returns the SHA-1 of those padded bytes too.
    pub fn check_padded(bytes: &[u8], len: usize) -> (Self, PieceHash) {
        let mut hasher = sha1_checked::Sha1::builder().safe_hash(false).build();
        sha1_checked::Digest::update(&mut hasher, bytes);
        feed_zeros(len.saturating_sub(bytes.len()), |z| {
            sha1_checked::Digest::update(&mut hasher, z)
        });
        let result = hasher.try_finalize();
        let sha1 = PieceHash((*result.hash()).into());
        match result {
            CollisionResult::Ok(_) => (Collision::Clean, sha1),
            _ => (Collision::Detected, sha1),
        }
    }
}

/// Calls `f` with slices of zeros adding up to `n` bytes.
fn feed_zeros(mut n: usize, mut f: impl FnMut(&[u8])) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    while n > 0 {
        let k = n.min(ZEROS.len());
        f(&ZEROS[..k]);
        n -= k;
    }
}

/// Plain SHA-1 of `bytes` followed by zeros up to `len` bytes: the piece hash of a
/// padded piece, computed without building it.
pub fn padded_sha1(bytes: &[u8], len: usize) -> PieceHash {
    let mut h = sha1::Sha1::new();
    h.update(bytes);
    feed_zeros(len.saturating_sub(bytes.len()), |z| h.update(z));
    PieceHash(h.finalize().into())
}

/// The digests of a piece: BLAKE3 (its identity) and SHA-1 (what torrents carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digests {
    pub id: ChunkId,
    pub sha1: PieceHash,
    pub collision: Collision,
}

impl Digests {
    /// BLAKE3 and SHA-1 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::sha1_of(bytes, ChunkId::of(bytes))
    }

    /// SHA-1, for bytes whose BLAKE3 is already known.
    pub fn sha1_of(bytes: &[u8], id: ChunkId) -> Self {
        Digests {
            id,
            sha1: PieceHash(sha1::Sha1::digest(bytes).into()),
            collision: Collision::Unchecked,
        }
    }
}

/// A chunk followed by zeros up to `len` bytes, hashed as that padded piece: what a
/// padded lookup (`z` key) records. Made only by hashing the chunk's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padded {
    id: ChunkId,
    sha1: PieceHash,
    len: u32,
}

impl Padded {
    /// The BLAKE3 of `bytes` and the SHA-1 of `bytes` then zeros up to `len`; `None`
    /// unless `len` is longer than `bytes` (a piece as long as its chunk needs none).
    pub fn hash(bytes: &[u8], len: u32) -> Option<Self> {
        (bytes.len() < len as usize).then(|| Padded {
            id: ChunkId::of(bytes),
            sha1: padded_sha1(bytes, len as usize),
            len,
        })
    }

    /// The lookup from a padded piece already hashed to the chunk of its first bytes,
    /// also hashed: nothing is hashed again. `None` unless `padded` is `chunk`'s bytes
    /// followed by at least one zero.
    pub fn of(chunk: &VerifiedChunk, padded: &VerifiedChunk) -> Option<Self> {
        let (head, zeros) = padded.bytes().split_at_checked(chunk.len())?;
        (!zeros.is_empty() && head == chunk.bytes() && zeros.iter().all(|&b| b == 0)).then(|| {
            Padded {
                id: chunk.id(),
                sha1: padded.sha1(),
                len: padded.len() as u32,
            }
        })
    }

    /// The chunk: the padded piece's first bytes.
    pub fn id(&self) -> ChunkId {
        self.id
    }

    /// The padded piece's SHA-1.
    pub fn sha1(&self) -> PieceHash {
        self.sha1
    }

    /// The padded piece's length.
    pub fn piece_len(&self) -> u32 {
        self.len
    }
}

/// Bytes whose digests were computed from (or checked against) the bytes themselves.
#[derive(Clone)]
pub struct VerifiedChunk {
    digests: Digests,
    bytes: Vec<u8>,
}

/// Bytes hashed against what the store holds ([`VerifiedChunk::hash_unless_known`]).
#[derive(Debug)]
pub enum Hashed {
    /// The store holds a chunk with these bytes' BLAKE3, indexed with this SHA-1.
    Known { id: ChunkId, sha1: PieceHash },
    /// Not held: the bytes, hashed and ready to store.
    New(VerifiedChunk),
}

impl Hashed {
    pub fn id(&self) -> ChunkId {
        match self {
            Hashed::Known { id, .. } => *id,
            Hashed::New(c) => c.id(),
        }
    }

    pub fn sha1(&self) -> PieceHash {
        match self {
            Hashed::Known { sha1, .. } => *sha1,
            Hashed::New(c) => c.sha1(),
        }
    }
}

impl AsRef<[u8]> for VerifiedChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl VerifiedChunk {
    /// Hashes `bytes`, making them storable.
    pub fn hash(bytes: Vec<u8>) -> Self {
        VerifiedChunk {
            digests: Digests::of(&bytes),
            bytes,
        }
    }

    /// Hashes `bytes` (BLAKE3 once) and asks `known` whether the store holds a chunk
    /// of that id, and with which SHA-1: only bytes it does not hold get their SHA-1
    /// computed and become storable. An import and an adoption both start here.
    pub fn hash_unless_known<E>(
        bytes: Vec<u8>,
        known: impl FnOnce(&ChunkId) -> Result<Option<PieceHash>, E>,
    ) -> Result<Hashed, E> {
        let id = ChunkId::of(&bytes);
        Ok(match known(&id)? {
            Some(sha1) => Hashed::Known { id, sha1 },
            None => Hashed::New(VerifiedChunk {
                digests: Digests::sha1_of(&bytes, id),
                bytes,
            }),
        })
    }

    /// Checks bytes read back from storage against the digests they were stored under.
    /// Returns the bytes back on mismatch.
    pub fn verify(bytes: Vec<u8>, expected: Digests) -> Result<Self, Vec<u8>> {
        if ChunkId::of(&bytes) == expected.id {
            Ok(VerifiedChunk {
                digests: expected,
                bytes,
            })
        } else {
            Err(bytes)
        }
    }

    pub fn digests(&self) -> Digests {
        self.digests
    }

    pub fn id(&self) -> ChunkId {
        self.digests.id
    }

    pub fn sha1(&self) -> PieceHash {
        self.digests.sha1
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl std::fmt::Debug for VerifiedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedChunk")
            .field("id", &self.digests.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_lookup_from_two_hashed_chunks_is_the_one_hashing_makes() {
        let data = b"tail of a file".to_vec();
        let mut piece = data.clone();
        piece.resize(64, 0);
        let (short, padded) = (
            VerifiedChunk::hash(data.clone()),
            VerifiedChunk::hash(piece),
        );
        assert_eq!(Padded::of(&short, &padded), Padded::hash(&data, 64));
        let mut dirty = padded.bytes().to_vec();
        dirty[63] = 1;
        assert_eq!(Padded::of(&short, &VerifiedChunk::hash(dirty)), None);
        assert_eq!(
            Padded::of(&short, &short),
            None,
            "no zeros: no padded lookup"
        );
    }

    #[test]
    fn verify_refuses_other_bytes() {
        let c = VerifiedChunk::hash(b"hello".to_vec());
        assert!(VerifiedChunk::verify(b"hellp".to_vec(), c.digests()).is_err());
        assert!(VerifiedChunk::verify(b"hello".to_vec(), c.digests()).is_ok());
        assert_eq!(
            c.sha1().to_hex(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        assert_eq!(Collision::check(c.bytes()), Collision::Clean);
    }

    #[test]
    fn padded_hashes_are_those_of_the_bytes_then_zeros() {
        let mut padded = b"tail".to_vec();
        padded.resize(200_000, 0);
        let whole = Digests::of(&padded).sha1;
        assert_eq!(padded_sha1(b"tail", 200_000), whole);
        assert_eq!(
            Collision::check_padded(b"tail", 200_000),
            (Collision::Clean, whole)
        );
        assert_eq!(padded_sha1(b"tail", 4), Digests::of(b"tail").sha1);
    }
}
