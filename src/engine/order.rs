//! The order pieces are asked for, when many cas nodes fetch one torrent at once.
//!
//! librqbit asks each peer for the first piece, in order, that the peer has and no
//! other peer is sending; it has no rarest-first selection and no choking. Nodes that
//! fetch together from one seeder then ask it for the same pieces, and the seeder's
//! link carries every piece once per node. One lever is left: a librqbit file stream
//! makes the pieces after its position the first asked for, from every peer that has
//! them, the first piece of every stream before the second of any.
//!
//! So a fetch among nodes that tell each other what they hold (a [`Swarm`]) is steered
//! rarest-first: a few times a second the streams are moved to the pieces that the
//! fewest other nodes hold or are about to hold, ties broken by a random preference of
//! this node's own. A seeder is then asked mostly for pieces no other node has, and
//! the nodes fill in the rest from each other. What others say they hold only orders
//! the asking: every piece is still checked against its hash, whoever sends it.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncSeek, AsyncSeekExt};

use super::storage::{bitfield, Inner};
use super::Engine;
use crate::InfoHash;
use librqbit::ManagedTorrent;

/// Streams open at once over every torrent being fetched: [`PLACES`] per torrent,
/// at most eight torrents at a time. Each stream holds one of librqbit's
/// blocking-work permits for as long as it is open, so the engine raises their
/// number by as many ([`super::Engine::start`]).
pub const STREAMS: usize = 64;
/// Torrents fetched at once that still have many pieces no node holds: those are
/// the pieces only a seeder can send, and its link is shared by their connections.
/// Every node takes the torrents in the same order, so at any time all of them
/// fetch the same few, and each piece a seeder sends has seven nodes to go on to.
const FETCHING: usize = 4;
/// A torrent no longer counts among the [`FETCHING`] once at most this percentage
/// of its pieces is held by no node and asked for by none: the next one starts
/// while the nodes still pass the last ones among themselves, so the seeder's
/// first pieces of it are there to pass on when those run out.
const SPREAD_PERCENT: usize = 15;
/// Chunk requests outstanding per peer in a steered fetch (librqbit's default is
/// 128, 2 MiB): a piece is reserved for a peer until all its chunks are asked for,
/// and a seeder sends what was asked even when the piece is later taken from another
/// peer (librqbit ignores cancels), so deep queues commit to pieces long before they
/// come, and spend the seeder's link on copies.
pub const REQUESTS: usize = 16;
/// How often the streams are moved.
const TICK: Duration = Duration::from_millis(250);
/// How long a piece counts as arriving after its last block came.
const ARRIVING: Duration = Duration::from_secs(4);

/// The other nodes fetching the same torrents, and what they hold.
pub trait Swarm: Send + Sync {
    /// For each of torrent `ih`'s `pieces` pieces, how many other nodes hold it or
    /// are about to (have it in `claims`), as far as they told.
    fn counts(&self, ih: &InfoHash, pieces: usize) -> Vec<u32>;
    /// Which of `ih`'s `pieces` pieces are this node's to ask seeders for, before
    /// any other: its share of an even split among the nodes fetching the torrent.
    fn shares(&self, ih: &InfoHash, pieces: usize) -> Vec<bool>;
    /// Tells the others what this node holds of `ih` (a bitfield, most significant
    /// bit first) and which pieces it is about to ask for.
    fn holding(&self, ih: &InfoHash, bitfield: &[u8], claims: &[u32]);
    /// The other nodes' BitTorrent addresses known now. A torrent is given them
    /// when it is added, and meets them again whenever it is restarted: librqbit
    /// starts a torrent again with the peers it was added with (and LSD, trackers),
    /// not with those it found since.
    fn peers(&self) -> Vec<std::net::SocketAddr>;
}

trait Seek: AsyncSeek + Unpin + Send {}
impl<T: AsyncSeek + Unpin + Send> Seek for T {}

/// Streams per torrent steered.
const PLACES: usize = 8;

/// The steering of a whole fetch: its torrents of more than one piece are steered
/// rarest-first, [`FETCHING`] at a time and one more whenever one of them has
/// spread (up to as many as there are streams for), in the order given, which is
/// the same on every node; the others wait, selecting nothing, for their turn.
pub struct Steering {
    swarm: Arc<dyn Swarm>,
    waiting: VecDeque<Arc<ManagedTorrent>>,
    active: Vec<Rarest>,
}

impl Steering {
    /// Takes over torrents added with no file selected ([`super::Fetch::Steered`]).
    pub async fn start(
        engine: &Engine,
        swarm: Arc<dyn Swarm>,
        handles: &[(InfoHash, Arc<ManagedTorrent>)],
    ) -> anyhow::Result<Steering> {
        let mut waiting = VecDeque::new();
        for (ih, h) in handles {
            // (Nothing is selected yet, so librqbit counts each as finished.)
            match engine.factory.counters(ih).map(|c| c.progress()) {
                Some((held, all)) if held < all && all > 1 => waiting.push_back(h.clone()),
                _ => engine.select_all(h).await?,
            }
        }
        let mut s = Steering {
            swarm,
            waiting,
            active: Vec::new(),
        };
        s.tick(engine).await?;
        Ok(s)
    }

    /// Steers the torrents being fetched, and starts the next ones when there is room.
    pub async fn tick(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let mut done = Vec::new();
        for (i, r) in self.active.iter_mut().enumerate() {
            // The order is advice: a fetch goes on without it.
            match r.tick().await {
                Ok(true) => done.push(i),
                Ok(false) => {}
                Err(e) => tracing::debug!("steering torrent {}: {e:#}", r.ih),
            }
            if std::mem::take(&mut r.reintroduce) {
                tracing::debug!(
                    "torrent {}: first piece held, meeting its peers again",
                    r.ih
                );
                engine.restart(&r.handle).await?;
                engine.select_all(&r.handle).await?;
            }
        }
        for i in done.into_iter().rev() {
            self.active.swap_remove(i);
        }
        while self.active.len() < STREAMS / PLACES
            && self.active.iter().filter(|r| !r.spread).count() < FETCHING
        {
            let Some(h) = self.waiting.pop_front() else {
                break;
            };
            let ih = InfoHash(h.info_hash().0);
            // Its streams are in place before it asks for a piece. They also keep it
            // from counting as finished, which it did while it waited with nothing
            // selected: librqbit lets go of a peer of a finished torrent that wants
            // nothing from it, for good.
            if let Some(mut r) = Rarest::new(engine, &ih, self.swarm.clone(), PLACES)? {
                if let Err(e) = r.tick().await {
                    tracing::debug!("steering torrent {ih}: {e:#}");
                }
                self.active.push(r);
            }
            // Started again, it meets at once the peers it was added with (the
            // swarm's, [`Swarm::peers`]) and those LSD finds: those it let go, and
            // those that did not answer yet (a node still adding it), which it would
            // try again only after 10 s, then a minute.
            engine.restart(&h).await?;
            engine.select_all(&h).await?;
        }
        Ok(())
    }
}

/// Steers one torrent's fetch rarest-first while it lives.
pub struct Rarest {
    ih: InfoHash,
    swarm: Arc<dyn Swarm>,
    storage: Arc<Inner>,
    handle: Arc<ManagedTorrent>,
    /// Each piece's place in this node's random preference.
    key: Vec<u32>,
    /// The first byte of each piece, as (file, offset in the file).
    starts: Vec<Option<(usize, u64)>>,
    streams: Vec<(usize, Box<dyn Seek>)>,
    places: usize,
    next: Instant,
    /// Held no piece when its turn came: it meets its peers again once it holds one.
    /// librqbit 9.1 tells a peer of each new piece only once that peer sent what it
    /// holds, and a peer that holds nothing sends nothing; two nodes that met
    /// empty-handed never learn what the other gets, until their connection times out
    /// (10 s without a message) and is tried again (10 s later). Met again holding a
    /// piece, this node sends what it holds, and the other tells it of each new piece.
    fresh: bool,
    /// Due to meet its peers again ([`Steering::tick`] does it).
    reintroduce: bool,
    /// Few of its pieces are left that no node holds or asked for ([`spread`]).
    spread: bool,
}

impl Rarest {
    /// A steering for torrent `ih` with at most `places` streams, or `None` when the
    /// engine does not run it.
    fn new(
        engine: &Engine,
        ih: &InfoHash,
        swarm: Arc<dyn Swarm>,
        places: usize,
    ) -> anyhow::Result<Option<Rarest>> {
        let (Some(handle), Some(storage)) = (engine.handle(ih), engine.factory.counters(ih)) else {
            return Ok(None);
        };
        let meta = storage.meta();
        let piece = u64::from(meta.piece_length);
        let n = meta.pieces.len();
        // Pieces that start in padding (none in a well-made torrent) are not aimed at.
        let mut starts = vec![None; n];
        let mut file_start = 0u64;
        for (id, f) in meta.files.iter().enumerate() {
            let end = file_start + f.length;
            if !f.pad {
                let mut p = file_start.div_ceil(piece);
                while p * piece < end && (p as usize) < n {
                    starts[p as usize] = Some((id, p * piece - file_start));
                    p += 1;
                }
            }
            file_start = end;
        }
        // Pieces in turn from a random place: a node's next choices follow its last.
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed)?;
        let from = (u64::from_le_bytes(seed) % n.max(1) as u64) as usize;
        let key = (0..n).map(|p| ((p + n - from) % n) as u32).collect();
        let fresh = !storage.held_map().iter().any(|h| *h);
        Ok(Some(Rarest {
            ih: *ih,
            swarm,
            storage,
            handle,
            key,
            starts,
            streams: Vec::new(),
            places: places.max(1),
            next: Instant::now(),
            fresh,
            reintroduce: false,
            spread: false,
        }))
    }

    /// Tells the swarm what is held, and moves the streams to the rarest pieces
    /// wanted, if it is time. True once every piece is held.
    async fn tick(&mut self) -> anyhow::Result<bool> {
        if Instant::now() < self.next {
            return Ok(false);
        }
        self.next = Instant::now() + TICK;
        let held = self.storage.held_map();
        let receiving = self.storage.receiving(ARRIVING);
        if held.iter().all(|h| *h) {
            self.swarm
                .holding(&self.ih, &bitfield(held.into_iter()), &[]);
            self.streams.clear();
            let from: Vec<String> = super::peer_bytes(&self.handle)
                .into_iter()
                .filter(|(_, b)| *b > 0)
                .map(|(a, b)| format!("{a} {} KiB", b >> 10))
                .collect();
            tracing::debug!("torrent {} complete; from {}", self.ih, from.join(", "));
            return Ok(true);
        }
        // Pieces arriving are asked for already: the streams move past them.
        let mut busy = held.clone();
        for p in &receiving {
            busy[*p] = true;
        }
        let counts = self.swarm.counts(&self.ih, held.len());
        let shares = self.swarm.shares(&self.ih, held.len());
        let targets = choose(&busy, &counts, &shares, &self.key, self.places);
        self.spread = spread(&busy, &counts);
        let claims: Vec<u32> = receiving.iter().map(|p| *p as u32).collect();
        let (pieces, have) = (held.len(), held.iter().filter(|h| **h).count());
        if self.fresh && have > 0 {
            self.fresh = false;
            self.reintroduce = true;
        }
        self.swarm
            .holding(&self.ih, &bitfield(held.into_iter()), &claims);
        let starts = run_starts(&targets);
        tracing::trace!(
            "torrent {}: {have} of {pieces} pieces held, {} arriving, {} this node's share, {} wanted held nowhere else, streams at {starts:?}",
            self.ih,
            receiving.len(),
            shares.iter().filter(|s| **s).count(),
            (0..pieces).filter(|p| !busy[*p] && counts.get(*p) == Some(&0)).count()
        );
        self.aim(&starts).await?;
        Ok(false)
    }

    /// Puts one stream at each of `targets`, reusing streams of the same file.
    async fn aim(&mut self, targets: &[usize]) -> anyhow::Result<()> {
        let mut spare: Vec<(usize, Box<dyn Seek>)> = std::mem::take(&mut self.streams);
        for &p in targets {
            let Some((file, offset)) = self.starts.get(p).copied().flatten() else {
                continue;
            };
            let same_file = spare.iter().position(|(f, _)| *f == file);
            let mut stream = match same_file {
                Some(i) => spare.swap_remove(i).1,
                None => {
                    // A stream of another file makes room first: each holds a permit.
                    if spare.len() + self.streams.len() >= self.places {
                        spare.pop();
                    }
                    Box::new(self.handle.clone().stream(file).await?)
                }
            };
            stream.seek(SeekFrom::Start(offset)).await?;
            self.streams.push((file, stream));
        }
        Ok(())
    }
}

/// Whether at most [`SPREAD_PERCENT`] of a torrent's pieces are neither held or
/// arriving here (`busy`) nor held or asked for by another node (`counts`).
fn spread(busy: &[bool], counts: &[u32]) -> bool {
    let nowhere = (0..busy.len())
        .filter(|p| !busy[*p] && counts.get(*p).is_none_or(|c| *c == 0))
        .count();
    nowhere * 100 <= SPREAD_PERCENT * busy.len()
}

/// Where streams go to ask for `targets` first: a stream asks for the pieces after
/// its place in turn, so one goes at the start of each run of targets.
fn run_starts(targets: &[usize]) -> Vec<usize> {
    targets
        .iter()
        .copied()
        .filter(|t| *t == 0 || !targets.contains(&(t - 1)))
        .collect()
}

/// Up to `k` pieces to ask for first. While this node's share (`shares`) has pieces
/// not held that no other node holds, only those: every stream's next piece goes to
/// whichever peer has it, a seeder too, so a piece that is another node's share
/// would be sent by the seeder twice. Then those not held, fewest holders first,
/// ties by `key`.
fn choose(held: &[bool], counts: &[u32], shares: &[bool], key: &[u32], k: usize) -> Vec<usize> {
    let count = |p: usize| counts.get(p).copied().unwrap_or(0);
    let mut wanted: Vec<usize> = (0..held.len()).filter(|p| !held[*p]).collect();
    let own = |p: &usize| shares.get(*p).copied().unwrap_or(false) && count(*p) == 0;
    if wanted.iter().any(own) {
        wanted.retain(own);
    }
    let rank = |p: &usize| (count(*p), key.get(*p).copied().unwrap_or(0));
    if wanted.len() > k {
        wanted.select_nth_unstable_by_key(k, rank);
        wanted.truncate(k);
    }
    wanted.sort_by_key(rank);
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rarest_unheld_pieces_come_first() {
        let held = [true, false, false, false, false, false];
        let counts = [0, 3, 0, 1, 0, 2];
        let key = [0, 0, 9, 0, 1, 0];
        assert_eq!(choose(&held, &counts, &[], &key, 3), vec![4, 2, 3]);
        assert_eq!(choose(&held, &counts, &[], &key, 10), vec![4, 2, 3, 5, 1]);
        assert_eq!(
            choose(&[true, true], &[0, 0], &[], &[0, 0], 4),
            Vec::<usize>::new()
        );
        // Counts and keys shorter than the torrent count as none and first.
        assert_eq!(choose(&[false, false], &[1], &[], &[], 1), vec![1]);
    }

    #[test]
    fn only_the_share_no_one_else_holds_while_there_is_one() {
        let held = [true, false, false, false, false, false];
        let counts = [0, 0, 1, 0, 0, 2];
        let key = [0, 5, 0, 1, 0, 0];
        // Piece 0 is held, 2 another node holds: 3 and 1 are left of the share.
        let shares = [true, true, true, true, false, false];
        assert_eq!(choose(&held, &counts, &shares, &key, 8), vec![3, 1]);
        // Once the share is held (or others hold it), the rarest of the rest.
        let shares = [true, false, true, false, false, false];
        assert_eq!(choose(&held, &counts, &shares, &key, 3), vec![4, 3, 1]);
    }

    #[test]
    fn a_torrent_has_spread_once_few_pieces_are_held_nowhere() {
        // Twenty pieces: three (15 %) held nowhere is spread, four is not.
        let mut busy = vec![false; 20];
        let mut counts = vec![0u32; 20];
        assert!(!spread(&busy, &counts));
        busy[..10].fill(true);
        counts[10..16].fill(1);
        assert!(!spread(&busy, &counts));
        counts[16] = 2;
        assert!(spread(&busy, &counts));
        // Counts shorter than the torrent count as held nowhere.
        assert!(!spread(&busy, &counts[..15]));
        assert!(spread(&[], &[]));
    }

    #[test]
    fn one_stream_goes_at_the_start_of_each_run() {
        assert_eq!(run_starts(&[5, 6, 7, 0, 1, 9]), vec![5, 0, 9]);
        assert_eq!(run_starts(&[]), Vec::<usize>::new());
    }
}
