//! The datagrams nodes of a channel exchange: "what is your newest update?", an
//! update, and what a node holds of a torrent it is fetching. They go over UDP to the
//! port number of the node's BitTorrent listener (librqbit listens on TCP only), to
//! the peers the engine found for the channel's torrent (by LSD, a tracker or
//! `--peer`). Each datagram is `CASSYNC` + a version byte (1) + the postcard encoding
//! of [`Message`]. Nothing in a datagram is trusted: an update counts only once its
//! signature verifies.

use serde::{Deserialize, Serialize};

use crate::channel::{PublicKey, SignedUpdate};
use crate::InfoHash;

const MAGIC: &[u8; 8] = b"CASSYNC\x01";
/// The largest datagram sent or read.
pub const MAX_DATAGRAM: usize = 1400;
/// The most bitfield bytes in one [`Message::Have`] (8192 pieces).
pub const HAVE_BYTES: usize = 1024;
/// The most claims in one [`Message::Have`].
pub const MAX_CLAIMS: usize = 64;

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
    /// What the sender holds of torrent `torrent` (of `pieces` pieces) while it
    /// fetches it: `bits` covers the pieces from `first` (a multiple of 8) on, most
    /// significant bit first; `claims` are pieces it is about to ask for; `node` is
    /// the sender's random name for itself, which splits the torrent among the nodes
    /// fetching it. Only advice on the order to ask for pieces in.
    Have {
        torrent: [u8; 20],
        node: u64,
        pieces: u32,
        first: u32,
        bits: Vec<u8>,
        claims: Vec<u32>,
    },
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

/// The datagrams that tell what `node` holds of `torrent`: `bitfield` in pieces of
/// [`HAVE_BYTES`], the claims (at most [`MAX_CLAIMS`]) in the first.
pub fn have_datagrams(
    torrent: &InfoHash,
    node: u64,
    pieces: usize,
    bitfield: &[u8],
    claims: &[u32],
) -> Vec<Vec<u8>> {
    let mut claims = claims.iter().copied().take(MAX_CLAIMS).collect::<Vec<_>>();
    let mut out = Vec::new();
    let mut first = 0usize;
    loop {
        let bits = bitfield.get(first / 8..).unwrap_or_default();
        let bits = &bits[..bits.len().min(HAVE_BYTES)];
        out.push(
            Message::Have {
                torrent: torrent.0,
                node,
                pieces: pieces as u32,
                first: first as u32,
                bits: bits.to_vec(),
                claims: std::mem::take(&mut claims),
            }
            .encode(),
        );
        first += HAVE_BYTES * 8;
        if first >= pieces {
            return out;
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

    #[test]
    fn a_long_bitfield_goes_in_datagrams_that_fit() {
        let pieces = HAVE_BYTES * 8 * 2 + 5;
        let bitfield = vec![0xff; pieces.div_ceil(8)];
        let claims: Vec<u32> = (0..1000).map(|c| c * 100_000).collect();
        let all = have_datagrams(&InfoHash([7; 20]), u64::MAX, pieces, &bitfield, &claims);
        assert_eq!(all.len(), 3);
        let mut firsts = Vec::new();
        for d in &all {
            assert!(d.len() <= MAX_DATAGRAM, "{} bytes", d.len());
            let Some(Message::Have {
                first,
                bits,
                claims,
                ..
            }) = Message::decode(d)
            else {
                panic!("not a Have: {d:?}");
            };
            assert_eq!(claims.len(), if first == 0 { MAX_CLAIMS } else { 0 });
            firsts.push((first, bits.len()));
        }
        assert_eq!(firsts, [(0, HAVE_BYTES), (8192, HAVE_BYTES), (16384, 1)]);
    }
}
