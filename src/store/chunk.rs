//! The verified chunk: the only form in which bytes enter or leave the store.
//!
//! A [`VerifiedChunk`] can be made in two ways only: by hashing bytes
//! ([`VerifiedChunk::hash`], which computes both digests from the bytes
//! themselves) or by checking bytes read back against the id they were stored
//! under ([`VerifiedChunk::verify`]). The pack writer takes nothing else, so
//! "unverified bytes in the store" cannot be written down.

use sha1_checked::{CollisionResult, Digest};

use crate::{ChunkId, PieceHash};

/// The two digests of a piece: BLAKE3 (identity) and SHA-1 (what torrents carry),
/// and whether the SHA-1 computation saw a collision-attack pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digests {
    pub id: ChunkId,
    pub sha1: PieceHash,
    /// The SHA-1 state matched a known collision-attack disturbance vector
    /// (SHAttered, SHA-mbles): such a piece is never matched by its SHA-1 alone.
    pub sha1_collision: bool,
}

impl Digests {
    /// SHA-1 with collision detection, plus BLAKE3.
    pub fn of(bytes: &[u8]) -> Self {
        Digests {
            id: ChunkId::of(bytes),
            ..Self::sha1_of(bytes, ChunkId([0; 32]))
        }
    }

    /// SHA-1 with collision detection, for bytes whose BLAKE3 is already known.
    pub fn sha1_of(bytes: &[u8], id: ChunkId) -> Self {
        let mut hasher = sha1_checked::Sha1::builder().safe_hash(false).build();
        hasher.update(bytes);
        let result = hasher.try_finalize();
        let collision = matches!(result, CollisionResult::Collision(_));
        let mut sha1 = [0u8; 20];
        sha1.copy_from_slice(result.hash());
        Digests {
            id,
            sha1: PieceHash(sha1),
            sha1_collision: collision,
        }
    }
}

/// Bytes whose digests were computed from (or checked against) the bytes themselves.
#[derive(Clone)]
pub struct VerifiedChunk {
    digests: Digests,
    bytes: Vec<u8>,
}

impl VerifiedChunk {
    /// Hashes `bytes`, making them storable.
    pub fn hash(bytes: Vec<u8>) -> Self {
        VerifiedChunk {
            digests: Digests::of(&bytes),
            bytes,
        }
    }

    /// Takes bytes whose BLAKE3 was computed by the caller from these very bytes
    /// (`id == ChunkId::of(&bytes)`), computing only the SHA-1. Checked again in debug builds.
    pub fn with_id(bytes: Vec<u8>, id: ChunkId) -> Self {
        debug_assert_eq!(ChunkId::of(&bytes), id);
        VerifiedChunk {
            digests: Digests::sha1_of(&bytes, id),
            bytes,
        }
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
    fn verify_refuses_other_bytes() {
        let c = VerifiedChunk::hash(b"hello".to_vec());
        assert!(VerifiedChunk::verify(b"hellp".to_vec(), c.digests()).is_err());
        assert!(VerifiedChunk::verify(b"hello".to_vec(), c.digests()).is_ok());
        assert_eq!(
            c.sha1().to_hex(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        assert!(!c.digests().sha1_collision);
    }
}
