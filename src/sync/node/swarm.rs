//! What the other nodes hold of the torrents this node is fetching, as they tell it
//! in [`Message::Have`] datagrams: the counts that order a fetch rarest-first, and
//! the share of each torrent this node asks seeders for ([`crate::engine::order`]).
//! Only torrents this node is fetching are kept, from at most [`MAX_PEERS`] peers
//! each, and only what was told in the last [`FRESH`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Node;
use crate::engine::order::Swarm;
use crate::sync::wire::{have_datagrams, Message};
use crate::InfoHash;

/// How long what a peer told counts.
const FRESH: Duration = Duration::from_secs(3);
/// How long a torrent is kept after this node last told what it holds of it.
const KEEP: Duration = Duration::from_secs(30);
/// Peers heard per torrent.
const MAX_PEERS: usize = 64;

#[derive(Default)]
pub(super) struct Gossip {
    torrents: HashMap<InfoHash, Told>,
}

struct Told {
    pieces: usize,
    /// When this node last told what it holds.
    at: Instant,
    peers: HashMap<SocketAddr, Heard>,
}

struct Heard {
    at: Instant,
    node: u64,
    bits: Vec<u8>,
    claims: Vec<u32>,
}

impl Gossip {
    /// This node fetches `ih`, of `pieces` pieces: what others hold of it is kept.
    fn fetching(&mut self, ih: &InfoHash, pieces: usize) {
        let now = Instant::now();
        self.torrents.retain(|_, t| now - t.at < KEEP);
        let told = self.torrents.entry(*ih).or_insert_with(|| Told {
            pieces,
            at: now,
            peers: HashMap::new(),
        });
        told.at = now;
    }

    /// Takes a [`Message::Have`] from `from`; anything that does not fit a torrent
    /// being fetched is dropped.
    pub(super) fn hear(&mut self, from: SocketAddr, msg: Message) {
        let Message::Have {
            torrent,
            node,
            pieces,
            first,
            bits,
            claims,
        } = msg
        else {
            return;
        };
        let Some(told) = self.torrents.get_mut(&InfoHash(torrent)) else {
            return;
        };
        let (first, size) = (first as usize, told.pieces.div_ceil(8));
        let start = first / 8;
        if pieces as usize != told.pieces
            || first % 8 != 0
            || start.checked_add(bits.len()).is_none_or(|end| end > size)
        {
            return;
        }
        if told.peers.len() >= MAX_PEERS && !told.peers.contains_key(&from) {
            return;
        }
        let heard = told.peers.entry(from).or_insert_with(|| Heard {
            at: Instant::now(),
            node,
            bits: vec![0; size],
            claims: Vec::new(),
        });
        heard.at = Instant::now();
        heard.node = node;
        heard.bits[start..start + bits.len()].copy_from_slice(&bits);
        if first == 0 {
            heard.claims = claims;
        }
    }

    fn counts(&self, ih: &InfoHash, pieces: usize) -> Vec<u32> {
        let mut counts = vec![0u32; pieces];
        let Some(told) = self.torrents.get(ih).filter(|t| t.pieces == pieces) else {
            return counts;
        };
        for heard in told.peers.values().filter(|h| h.at.elapsed() < FRESH) {
            let holds = |p: usize| heard.bits[p / 8] & (0x80 >> (p % 8)) != 0;
            for (p, c) in counts.iter_mut().enumerate() {
                *c += u32::from(holds(p));
            }
            // A claim counts once, and not for a piece the peer holds already.
            let mut claims: Vec<usize> = heard.claims.iter().map(|c| *c as usize).collect();
            claims.sort_unstable();
            claims.dedup();
            for p in claims.into_iter().filter(|p| *p < pieces && !holds(*p)) {
                counts[p] += 1;
            }
        }
        counts
    }

    /// Which of `ih`'s `pieces` pieces are node `me`'s share: the nodes heard
    /// fetching it and `me`, in the order of their names, take every n-th piece
    /// each, from a place the torrent picks. Nodes that hear the same nodes split
    /// the torrent the same way, so each asks the seeders for pieces of its own.
    fn shares(&self, ih: &InfoHash, pieces: usize, me: u64) -> Vec<bool> {
        let mut nodes = vec![me];
        if let Some(told) = self.torrents.get(ih).filter(|t| t.pieces == pieces) {
            nodes.extend(
                told.peers
                    .values()
                    .filter(|h| h.at.elapsed() < FRESH)
                    .map(|h| h.node),
            );
        }
        nodes.sort_unstable();
        nodes.dedup();
        let n = nodes.len();
        let rank = nodes.iter().position(|x| *x == me).unwrap_or(0);
        let mut place = [0u8; 8];
        place.copy_from_slice(&ih.0[..8]);
        let from = (u64::from_le_bytes(place) % n as u64) as usize;
        (0..pieces).map(|p| (p + from) % n == rank).collect()
    }
}

impl Swarm for Node {
    fn counts(&self, ih: &InfoHash, pieces: usize) -> Vec<u32> {
        self.gossip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts(ih, pieces)
    }

    fn shares(&self, ih: &InfoHash, pieces: usize) -> Vec<bool> {
        self.gossip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shares(ih, pieces, self.id)
    }

    fn peers(&self) -> Vec<SocketAddr> {
        Node::peers(self)
    }

    fn holding(&self, ih: &InfoHash, bitfield: &[u8], claims: &[u32]) {
        let pieces = self.engine.counts(ih).map(|c| c.pieces);
        let Some(pieces) = pieces else { return };
        self.gossip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fetching(ih, pieces);
        let peers = self.peers();
        for d in have_datagrams(ih, self.id, pieces, bitfield, claims) {
            for a in &peers {
                // Advice only: a datagram that does not go now is not missed.
                let _ = self.socket.try_send_to(&d, *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have(first: u32, bits: Vec<u8>, claims: Vec<u32>) -> Message {
        Message::Have {
            torrent: [1; 20],
            node: 7,
            pieces: 10,
            first,
            bits,
            claims,
        }
    }

    #[test]
    fn counts_add_up_what_each_peer_holds_or_claims() {
        let ih = InfoHash([1; 20]);
        let (a, b) = (
            "10.0.0.1:7000".parse().unwrap(),
            "10.0.0.2:7000".parse().unwrap(),
        );
        let mut g = Gossip::default();
        // Nothing is kept for a torrent this node does not fetch.
        g.hear(a, have(0, vec![0xff, 0xc0], vec![]));
        g.fetching(&ih, 10);
        assert_eq!(g.counts(&ih, 10), vec![0; 10]);
        g.hear(a, have(0, vec![0b1100_0000, 0], vec![9]));
        g.hear(b, have(0, vec![0b1000_0000, 0b0100_0000], vec![0, 2, 99]));
        assert_eq!(g.counts(&ih, 10), vec![2, 1, 1, 0, 0, 0, 0, 0, 0, 2]);
        // Wrong sizes and places are dropped.
        g.hear(a, have(0, vec![0xff, 0xff, 0xff], vec![]));
        g.hear(a, have(3, vec![0xff], vec![]));
        g.hear(a, have(16, vec![0xff], vec![]));
        let mut wrong = have(0, vec![0xff, 0xff], vec![]);
        if let Message::Have { pieces, .. } = &mut wrong {
            *pieces = 11;
        }
        g.hear(a, wrong);
        assert_eq!(g.counts(&ih, 10), vec![2, 1, 1, 0, 0, 0, 0, 0, 0, 2]);
        // A torrent of another size counts nothing.
        assert_eq!(g.counts(&ih, 11), vec![0; 11]);
    }

    #[test]
    fn nodes_that_hear_each_other_split_a_torrent_evenly() {
        let ih = InfoHash([9; 20]);
        let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 7000));
        let ids = [40u64, 10, 30];
        let mut shares = Vec::new();
        for (i, me) in ids.iter().enumerate() {
            let mut g = Gossip::default();
            g.fetching(&ih, 10);
            // Alone, a node's share is the whole torrent.
            assert_eq!(g.shares(&ih, 10, *me), vec![true; 10]);
            for (j, other) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
                let mut m = have(0, vec![0, 0], vec![]);
                if let Message::Have { torrent, node, .. } = &mut m {
                    (*torrent, *node) = (ih.0, *other);
                }
                g.hear(addr(j as u8), m);
            }
            shares.push(g.shares(&ih, 10, *me));
        }
        // Every piece is exactly one node's, and each has three or four.
        for p in 0..10 {
            assert_eq!(shares.iter().filter(|s| s[p]).count(), 1, "piece {p}");
        }
        for s in &shares {
            let n = s.iter().filter(|x| **x).count();
            assert!((3..=4).contains(&n), "{s:?}");
        }
    }
}
