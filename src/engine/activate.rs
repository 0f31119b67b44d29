//! Torrents kept inactive until a peer wants one.
//!
//! librqbit keeps every torrent it is given live (tasks, timers, per-peer state), so a
//! store of 100,000 file torrents would cost minutes to start and gigabytes of memory.
//! With [`EngineOptions::on_demand`](super::EngineOptions::on_demand) the engine starts
//! with the *active* torrents only: every download but lazy ones, every pinned torrent
//! (fetched or adopted for its own sake), and each tree's manifest torrent. Every
//! other torrent of the store (the file and directory torrents of trees, lazy
//! downloads) is *inactive*. It is added to the session when a peer's handshake names
//! it (librqbit's torrent resolver, vendored change 14) or a read through the mount
//! needs one of its pieces, and announced meanwhile to its trackers in rounds
//! ([`announce_inactive`]), so that a peer finds it through a tracker as through a
//! direct address; one whose trackers name other peers is activated and dials them (a
//! leecher may wait for a seed to dial it). Nothing makes a torrent inactive again
//! while the engine runs.
//!
//! The store decides what exists: a handshake for an info-hash the catalog has no
//! record of is refused, as before.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{Engine, Fetch, Source};
use crate::{InfoHash, Store};

/// Announces sent at once to trackers for inactive torrents.
const ANNOUNCES_AT_ONCE: usize = 16;
/// At most this many inactive torrents announced per second.
const ANNOUNCES_PER_SECOND: u32 = 100;
/// How long one announce waits for its trackers.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between rounds of announces, as trackers commonly ask (30 minutes).
const ROUND: Duration = Duration::from_secs(30 * 60);

/// The torrents active from the start: pinned ones and each tree's manifest torrent
/// (downloads are resumed apart). A directory torrent is not: for a tree of 100,000
/// files it alone took 3 s and 400 MB to add. Read from `pins/` and `trees/`
/// only: no file torrent's record is read.
pub(super) fn active_at_start(store: &Store) -> crate::Result<Vec<InfoHash>> {
    let catalog = store.catalog();
    let mut seen = HashSet::new();
    let mut active = Vec::new();
    let mut keep = |ih: InfoHash| {
        if seen.insert(ih) && catalog.has_torrent(&ih) {
            active.push(ih);
        }
    };
    for ih in catalog.pins()? {
        keep(ih);
    }
    for id in catalog.trees()? {
        if let Some(tree) = catalog.tree(&id)? {
            keep(tree.manifest);
        }
    }
    Ok(active)
}

impl Engine {
    /// Whether torrent `ih` is in the session.
    pub fn is_active(&self, ih: &InfoHash) -> bool {
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(ih)
    }

    /// Torrents in the session.
    pub fn active_count(&self) -> usize {
        self.added.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Adds stored torrent `ih` to the session, if the catalog has it and it is not
    /// there yet, and waits until it serves. False if the store has no such torrent
    /// or it could not be added.
    pub async fn activate(&self, ih: InfoHash) -> bool {
        self.activate_with(ih, &[]).await
    }

    /// [`Engine::activate`], dialling `peers` too.
    async fn activate_with(&self, ih: InfoHash, peers: &[SocketAddr]) -> bool {
        let _one_at_a_time = self.activating.lock().await;
        if self.is_active(&ih) {
            return true;
        }
        let catalog = self.store.catalog();
        let found = catalog.torrent(&ih).and_then(|record| match record {
            Some(r) => Ok(Some((r.metainfo, Fetch::Whole, Vec::new()))),
            // A lazy download (`cas get --lazy`): it serves what it holds.
            None if catalog.is_lazy(&ih) => Ok(catalog
                .download(&ih)?
                .map(|t| (t, Fetch::Lazy, catalog.lazy_peers(&ih).unwrap_or_default()))),
            None => Ok(None),
        });
        let (torrent, fetch, mut known) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!("activating torrent {ih}: {e}");
                return false;
            }
        };
        known.extend_from_slice(peers);
        let started = Instant::now();
        match self.add_with(Source::Torrent(torrent), &known, fetch).await {
            Ok((_, h)) => match h.wait_until_initialized().await {
                Ok(()) => {
                    tracing::debug!("torrent {ih} activated in {:?}", started.elapsed());
                    true
                }
                Err(e) => {
                    tracing::warn!("activating torrent {ih}: {e:#}");
                    false
                }
            },
            Err(e) => {
                tracing::warn!("activating torrent {ih}: {e:#}");
                false
            }
        }
    }

    /// Serves the inactive torrents: a handshake naming one activates it, and they
    /// are announced to their trackers in rounds. For an engine started with
    /// `on_demand`; does nothing otherwise.
    pub fn serve_on_demand(self: &Arc<Self>) {
        if !self.on_demand {
            return;
        }
        let stored = self.stored_torrents();
        self.learn_req2(&stored);
        self.session
            .set_torrent_resolver(Some(Box::new(Resolver(Arc::downgrade(self)))));
        tokio::spawn(announce_inactive(Arc::downgrade(self), stored));
    }

    /// Every torrent the catalog records (none, logged, if it cannot be listed).
    fn stored_torrents(&self) -> Vec<InfoHash> {
        self.store.catalog().torrents().unwrap_or_else(|err| {
            tracing::warn!("listing the store's torrents: {err}");
            Vec::new()
        })
    }

    /// Keeps `HASH('req2', info-hash)` of every stored torrent (and lazy download),
    /// by which an encrypted handshake names its torrent.
    fn learn_req2(&self, torrents: &[InfoHash]) {
        use sha1::Digest;
        let lazy = self.store.catalog().downloads().unwrap_or_default();
        let map = torrents
            .iter()
            .chain(&lazy)
            .map(|ih| {
                let mut h = sha1::Sha1::new();
                h.update(b"req2");
                h.update(ih.0);
                (<[u8; 20]>::from(h.finalize()), *ih)
            })
            .collect();
        *self.req2.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Starts a round of announces of inactive torrents now (after an import).
    pub(super) fn announce_soon(&self) {
        self.announce_now.notify_one();
    }

    /// Whether a tracker's peer is this engine itself (its listen port, at its
    /// announced address, a loopback one or the one it listens on).
    fn is_own_address(&self, a: &SocketAddr) -> bool {
        a.port() == self.listen.port()
            && (a.ip().is_loopback()
                || a.ip() == self.listen.ip()
                || Some(a.ip()) == self.announce_ip)
    }

    /// The trackers to announce torrent `ih` to while it is inactive: its own, and
    /// the engine's unless it is private. None for a torrent the catalog lacks.
    fn trackers_of(&self, ih: &InfoHash) -> Option<(Vec<url::Url>, u64)> {
        let record = self.store.catalog().torrent(ih).ok()??;
        let meta = crate::meta::parse::Metainfo::parse(&record.metainfo).ok()?;
        let mut all = meta.trackers.clone();
        if !meta.private {
            all.extend(self.trackers.iter().cloned());
        }
        let mut urls: Vec<url::Url> = all.iter().filter_map(|t| t.parse().ok()).collect();
        urls.sort();
        urls.dedup();
        Some((urls, meta.length))
    }
}

/// librqbit's way to the torrents outside its session.
struct Resolver(Weak<Engine>);

impl librqbit::TorrentResolver for Resolver {
    fn resolve(&self, ih: librqbit_core::Id20) -> futures::future::BoxFuture<'static, bool> {
        let engine = self.0.clone();
        Box::pin(async move {
            match engine.upgrade() {
                Some(e) => e.activate(InfoHash(ih.0)).await,
                None => false,
            }
        })
    }

    fn find_by_req2(&self, req2: &[u8; 20]) -> Option<librqbit_core::Id20> {
        let e = self.0.upgrade()?;
        let map = e.req2.read().unwrap_or_else(|e| e.into_inner());
        map.get(req2).map(|ih| librqbit_core::Id20::new(ih.0))
    }
}

/// Announces every inactive torrent that has a tracker, at most
/// [`ANNOUNCES_PER_SECOND`], a round every [`ROUND`] or when an import asks. Ends with
/// the engine.
async fn announce_inactive(engine: Weak<Engine>, first: Vec<InfoHash>) {
    let mut first = Some(first);
    loop {
        let round = Instant::now();
        let (list, now) = {
            let Some(e) = engine.upgrade() else { return };
            // The first round's list is the one the resolver just learnt from.
            let list = first.take().unwrap_or_else(|| {
                let list = e.stored_torrents();
                e.learn_req2(&list);
                list
            });
            (list, e.announce_now.clone())
        };
        let gap = Duration::from_secs(1) / ANNOUNCES_PER_SECOND;
        let announced = futures::stream::iter(list.into_iter().enumerate())
            .map(|(i, ih)| {
                let engine = engine.clone();
                async move {
                    tokio::time::sleep_until((round + gap * i as u32).into()).await;
                    let e = engine.upgrade()?;
                    if e.is_active(&ih) {
                        return Some(false);
                    }
                    let (trackers, length) = e.trackers_of(&ih)?;
                    if trackers.is_empty() {
                        return Some(false);
                    }
                    let session = e.session.clone();
                    drop(e);
                    let id = librqbit_core::Id20::new(ih.0);
                    let peers = session
                        .announce_once(id, trackers, length, ANNOUNCE_TIMEOUT)
                        .await;
                    let e = engine.upgrade()?;
                    let others: Vec<SocketAddr> =
                        peers.into_iter().filter(|a| !e.is_own_address(a)).collect();
                    if !others.is_empty() {
                        // Someone else is in its swarm: a leecher may be waiting
                        // for a seed to dial it (behind NAT, or a client that dials
                        // no loopback peer).
                        tracing::debug!("torrent {ih}: {} peers at its trackers", others.len());
                        e.activate_with(ih, &others).await;
                    }
                    Some(true)
                }
            })
            .buffer_unordered(ANNOUNCES_AT_ONCE)
            .filter(|r| futures::future::ready(*r == Some(true)))
            .count()
            .await;
        if engine.strong_count() == 0 {
            return;
        }
        tracing::debug!(
            "announced {announced} inactive torrents in {:?}",
            round.elapsed()
        );
        tokio::select! {
            _ = tokio::time::sleep_until((round + ROUND).into()) => {}
            _ = now.notified() => {}
        }
    }
}
