//! The identifiers cas deals in: BLAKE3 content ids, SHA-1 piece hashes, info-hashes.
//!
//! Each is a fixed-size byte array with a lower-case hex form; parsing accepts
//! either case and refuses any other length.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        ///
        /// Serialised as hex in human-readable formats (JSON), as raw bytes otherwise.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; $len]>::deserialize(d).map($name)
                }
            }
        }

        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = $len;

            /// The lower-case hex form.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Builds the id from a slice of exactly `LEN` bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $len];
                if s.len() != 2 * $len || hex::decode_to_slice(s, &mut out).is_err() {
                    return Err(crate::Error::BadId {
                        what: $what,
                        input: s.to_string(),
                    });
                }
                Ok($name(out))
            }
        }
    };
}

hex_id!(
    /// BLAKE3 of a chunk's bytes: the identity of a chunk in the store.
    ChunkId, 32, "chunk id (64 hex digits)"
);
hex_id!(
    /// BLAKE3 of a whole file's bytes: names the file's torrent.
    ContentId, 32, "content hash (64 hex digits)"
);
hex_id!(
    /// BLAKE3 of a tree manifest's bytes.
    TreeId, 32, "tree id (64 hex digits)"
);
hex_id!(
    /// SHA-1 of a torrent piece, as BitTorrent v1 carries it.
    PieceHash, 20, "SHA-1 piece hash (40 hex digits)"
);
hex_id!(
    /// SHA-1 of a torrent's bencoded info dictionary.
    InfoHash, 20, "info-hash (40 hex digits)"
);

impl ChunkId {
    /// The chunk id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_bad_length() {
        let ih: InfoHash = "00112233445566778899AABBCCDDEEFF00112233".parse().unwrap();
        assert_eq!(ih.to_hex(), "00112233445566778899aabbccddeeff00112233");
        let err = "0011".parse::<InfoHash>().unwrap_err().to_string();
        assert!(err.contains("info-hash (40 hex digits)"), "{err}");
        assert!("zz".repeat(32).parse::<TreeId>().is_err());
    }
}
