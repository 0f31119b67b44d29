//! The datagrams nodes of a channel exchange: "what is your newest update?" and an
//! update. They go over UDP to the port number of the node's BitTorrent listener
//! (librqbit listens on TCP only), to the peers the engine found for the channel's
//! torrent (by LSD, a tracker or `--peer`). Each datagram is `CASSYNC` + a version
//! byte (1) + the postcard encoding of [`Message`]. Nothing in a datagram is trusted:
//! an update counts only once its signature verifies.

use serde::{Deserialize, Serialize};

use crate::channel::{PublicKey, SignedUpdate};

const MAGIC: &[u8; 8] = b"CASSYNC\x01";
/// The largest datagram sent or read.
pub const MAX_DATAGRAM: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Asks for the newest update of `channel` if it ranks above (`seq`, `tree`).
    Query {
        channel: PublicKey,
        seq: u64,
        tree: [u8; 32],
    },
    /// A signed update ([`SignedUpdate::encode`]).
    Update(Vec<u8>),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        crate::catalog::encode(MAGIC, self)
    }

    /// Decodes a datagram; `None` for anything that is not one of ours.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() > MAX_DATAGRAM {
            return None;
        }
        match postcard::take_from_bytes(bytes.strip_prefix(MAGIC.as_slice())?) {
            Ok((m, [])) => Some(m),
            _ => None,
        }
    }
}

/// The datagram that carries `update`.
pub fn update_datagram(update: &SignedUpdate) -> Vec<u8> {
    Message::Update(update.encode()).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_strangers_are_ignored() {
        let q = Message::Query {
            channel: PublicKey([1; 32]),
            seq: 3,
            tree: [2; 32],
        };
        assert_eq!(Message::decode(&q.encode()), Some(q.clone()));
        let mut long = q.encode();
        long.push(0);
        assert_eq!(Message::decode(&long), None);
        assert_eq!(Message::decode(b"d1:ad2:id20:"), None);
    }
}
