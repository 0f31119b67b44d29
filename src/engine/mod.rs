//! The BitTorrent engine: librqbit, with the chunk store as its storage.
//!
//! [`Engine::start`] makes a librqbit session (DHT and LSD off unless asked, TCP on
//! one listen address, the announced port set explicitly), adds every torrent of the
//! catalog to seed it and every unfinished download to resume it, each served by a
//! [`storage::StoreStorage`]. This module is the only one that knows librqbit.

//!
//! Files: `options.rs` (what it is told), `session.rs` (starting it), `add.rs`
//! (adding a torrent), `committer.rs` (received pieces made durable), `limits.rs`
//! (rate limits, the schedule, share limits), `node.rs` (the node's figures),
//! `status.rs` (each torrent's state; pause, resume, forget),
//! `storage.rs` (librqbit's storage over the store) with `staging.rs` (pieces being
//! received), `get.rs` (a fetch), `lazy.rs` (a piece fetched for a read), `order.rs`
//! (a fetch's piece order steered by other nodes), `watch.rs` (a folder of
//! .torrent files).

mod activate;
mod add;
mod committer;
pub mod get;
pub mod lazy;
mod limits;
mod node;
mod options;
pub mod order;
mod session;
mod staging;
mod status;
mod storage;
pub mod watch;

use committer::committer;
pub use limits::{Limit, Limits, ShareLimits};
pub use node::NodeStats;
pub use options::{safe_magnet, Encryption, EngineOptions, Fetch, Source};
pub use status::{RunState, TorrentStatus};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use librqbit::{ManagedTorrent, Session};

use crate::{InfoHash, Store};

/// What the engine knows of one torrent's pieces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PieceCounts {
    /// Pieces in the torrent.
    pub pieces: usize,
    /// Pieces the store holds.
    pub held: usize,
    /// Bytes of pieces the store already held when the torrent was added.
    pub found_bytes: u64,
    /// Bytes of pieces received, verified and stored.
    pub stored_bytes: u64,
    /// Pieces received whose hash was wrong (dropped).
    pub rejected: u64,
}

/// Every peer librqbit knows for a torrent, connected or not, with the payload bytes
/// received from it.
pub(crate) fn peer_bytes(h: &ManagedTorrent) -> Vec<(String, u64)> {
    let Some(live) = h.live() else {
        return Vec::new();
    };
    // librqbit exports the filter's type only through its HTTP API's serde form.
    let Ok(all) = serde_json::from_str(r#"{"state":"all"}"#) else {
        return Vec::new();
    };
    live.per_peer_stats_snapshot(all)
        .peers
        .into_iter()
        .map(|(a, s)| (a, s.counters.fetched_bytes))
        .collect()
}

/// A running engine.
pub struct Engine {
    session: Arc<Session>,
    store: Arc<Store>,
    factory: storage::StoreStorageFactory,
    /// The address peers reach this engine at.
    listen: SocketAddr,
    /// The address trackers are told to give peers, if not the one they see.
    announce_ip: Option<std::net::IpAddr>,
    /// Torrents seeded or resumed at start, active or not.
    torrents: usize,
    trackers: Vec<String>,
    peers: Vec<SocketAddr>,
    /// librqbit's fastresume folder.
    resume: PathBuf,
    /// Rate and share limits, and the task's view of them.
    limits: Arc<limits::LimitState>,
    /// Payload bytes of earlier runs, for all-time figures.
    totals: node::Totals,
    /// Torrents added to the session.
    added: std::sync::Mutex<std::collections::HashSet<InfoHash>>,
    /// The id the next torrent added gets. librqbit, left to pick, takes one more
    /// than the highest it has saved, and two adds at once get the same id: the
    /// second is then answered with the first one's torrent.
    next_id: std::sync::atomic::AtomicUsize,
    /// Stored torrents outside the session are added when a peer asks for one
    /// ([`activate`]).
    on_demand: bool,
    /// One activation at a time: two handshakes for one torrent add it once.
    activating: tokio::sync::Mutex<()>,
    /// Wakes the announcer of inactive torrents.
    announce_now: Arc<tokio::sync::Notify>,
    /// Stored torrents by `HASH('req2', info-hash)` (an encrypted handshake's name).
    req2: std::sync::RwLock<std::collections::HashMap<[u8; 20], InfoHash>>,
}

impl Engine {
    /// The store the engine serves from and fetches into.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The address peers reach this engine at.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Torrents seeded or resumed when the engine started.
    pub fn started_with(&self) -> usize {
        self.torrents
    }

    /// Stops every torrent and the session (its listener, DHT and LSD). What was
    /// received is committed by the store's owner, not here.
    ///
    /// librqbit's `Session::stop` pauses every torrent and cancels the session's
    /// tasks before anything it awaits, then sleeps a second so that those tasks
    /// may end: polled once here, it does the former and skips the latter (the
    /// tasks end with the runtime), so that a service stops at once.
    pub async fn stop(&self) {
        self.save_totals();
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(20), self.session.stop()).await;
    }

    /// Piece counts of a torrent the engine runs (or ran since it started).
    pub fn counts(&self, ih: &InfoHash) -> Option<PieceCounts> {
        self.factory.counters(ih).map(|c| c.counts())
    }

    /// The session's handle on torrent `ih`, if it runs it.
    pub fn handle(&self, ih: &InfoHash) -> Option<Arc<ManagedTorrent>> {
        self.session.with_torrents(|ts| {
            ts.map(|(_, h)| h)
                .find(|h| h.info_hash().0 == ih.0)
                .cloned()
        })
    }

    /// Payload bytes sent to peers since this engine started, for a torrent it runs.
    pub fn uploaded(&self, ih: &InfoHash) -> Option<u64> {
        self.handle(ih).map(|h| h.stats().uploaded_bytes)
    }

    /// Every address the session knows for torrent `ih`'s peers, connected or not
    /// (those found by LSD, trackers and hints carry their listen port).
    pub fn peers(&self, ih: &InfoHash) -> Vec<SocketAddr> {
        let Some(h) = self.handle(ih) else {
            return Vec::new();
        };
        peer_bytes(&h)
            .into_iter()
            .filter_map(|(a, _)| a.parse().ok())
            .collect()
    }

    /// Selects every file of a torrent: one added lazily, or steered
    /// ([`Fetch::Steered`]) once its steering is in place.
    pub async fn select_all(&self, h: &Arc<ManagedTorrent>) -> anyhow::Result<()> {
        let files = h.metadata.load().as_ref().map_or(0, |m| m.file_infos.len());
        self.session
            .update_only_files(h, &(0..files).collect())
            .await
            .context("asking for the whole torrent")
    }

    /// Stops and starts torrent `h` again: the peers it was added with are tried at
    /// once, and LSD and trackers are asked again. (librqbit forgets on a pause the
    /// peers it found since the add.)
    pub async fn restart(&self, h: &Arc<ManagedTorrent>) -> anyhow::Result<()> {
        self.session.pause(h).await?;
        self.session.unpause(h).await
    }

    /// Stops and starts again every download in progress: peers it gave up on (a
    /// cut link makes librqbit wait up to an hour before trying one again) are tried
    /// at once, and LSD and trackers are asked again.
    pub async fn restart_downloads(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for ih in self.store.catalog().downloads()? {
            let Some(h) = self.handle(&ih) else {
                continue;
            };
            if h.stats().finished {
                continue;
            }
            self.restart(&h).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Bytes received from peers, verified and stored, since this engine started.
    pub fn received_total(&self) -> u64 {
        self.factory.received_total()
    }

    /// Payload bytes sent to peers since this engine started, over every torrent.
    pub fn uploaded_total(&self) -> u64 {
        self.session
            .with_torrents(|ts| ts.map(|(_, h)| h.stats().uploaded_bytes).sum())
    }

    /// Adds every torrent of the store not yet in the session (after an import made
    /// while serving, say); with `on_demand`, only those active from the start
    /// ([`activate::active_at_start`]), the others being announced soon.
    pub async fn add_new(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        let all = match self.on_demand {
            true => {
                self.announce_soon();
                activate::active_at_start(&self.store)?
            }
            false => self.store.catalog().torrents()?,
        };
        for ih in all {
            let known = self
                .added
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&ih);
            if known {
                continue;
            }
            if let Some(record) = self.store.catalog().torrent(&ih)? {
                self.add(Source::Torrent(record.metainfo), &[]).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}
