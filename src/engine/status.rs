//! What the engine says of each torrent it runs, in its own terms (no librqbit type
//! leaves): for front ends that list torrents (the web API), and pausing, resuming
//! and forgetting one.

use librqbit::api::TorrentIdOrHash;
use librqbit::TorrentStatsState;

use super::Engine;
use crate::InfoHash;

/// Where a torrent stands in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Its held pieces being looked at, or its metadata asked of peers.
    Checking,
    /// Seeding or fetching.
    Live,
    Paused,
    Error,
}

/// One torrent as the session sees it now.
#[derive(Clone, Debug)]
pub struct TorrentStatus {
    /// The name the metadata (or the magnet) gives, if known yet.
    pub name: Option<String>,
    pub state: RunState,
    /// Whether its metadata is known (a magnet's comes from peers).
    pub has_metadata: bool,
    /// Every wanted piece held.
    pub finished: bool,
    /// Bytes held, of `total_bytes`.
    pub progress_bytes: u64,
    pub total_bytes: u64,
    /// Payload bytes sent and received since the engine started.
    pub uploaded_bytes: u64,
    pub fetched_bytes: u64,
    /// Payload bytes a second, averaged over the last few seconds.
    pub download_speed: u64,
    pub upload_speed: u64,
    /// Peers connected now, and how many of them hold every piece.
    pub peers: u32,
    pub seeders: u32,
    /// Seconds until complete, at the present speed.
    pub eta: Option<u64>,
    pub error: Option<String>,
}

fn bytes_per_second(mbps: f64) -> u64 {
    (mbps * 1024.0 * 1024.0) as u64
}

impl Engine {
    /// Every torrent the session runs.
    pub fn running(&self) -> Vec<InfoHash> {
        self.session
            .with_torrents(|ts| ts.map(|(_, h)| InfoHash(h.info_hash().0)).collect())
    }

    /// What the session says of torrent `ih`, if it runs it.
    pub fn status(&self, ih: &InfoHash) -> Option<TorrentStatus> {
        let h = self.handle(ih)?;
        let s = h.stats();
        let state = match s.state {
            TorrentStatsState::Initializing { .. } => RunState::Checking,
            TorrentStatsState::Live => RunState::Live,
            TorrentStatsState::Paused => RunState::Paused,
            TorrentStatsState::Error => RunState::Error,
        };
        let live = s.live.as_ref();
        let download_speed = live.map_or(0, |l| bytes_per_second(l.download_speed.mbps));
        let left = s.total_bytes.saturating_sub(s.progress_bytes);
        Some(TorrentStatus {
            name: h.name(),
            state,
            has_metadata: h.metadata.load().is_some(),
            finished: s.finished,
            progress_bytes: s.progress_bytes,
            total_bytes: s.total_bytes,
            uploaded_bytes: s.uploaded_bytes,
            fetched_bytes: live.map_or(0, |l| l.snapshot.fetched_bytes),
            download_speed,
            upload_speed: live.map_or(0, |l| bytes_per_second(l.upload_speed.mbps)),
            peers: live.map_or(0, |l| l.snapshot.peer_stats.live),
            seeders: live.map_or(0, |l| l.snapshot.peer_stats.live_seeders),
            eta: (download_speed > 0).then(|| left / download_speed),
            error: s.error,
        })
    }

    /// Pauses torrent `ih`; false if the session does not run it.
    pub async fn pause(&self, ih: &InfoHash) -> anyhow::Result<bool> {
        let Some(h) = self.handle(ih) else {
            return Ok(false);
        };
        if !h.is_paused() {
            if let Err(e) = self.session.pause(&h).await {
                if !h.is_paused() {
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Starts torrent `ih` again; false if the session does not run it.
    pub async fn resume(&self, ih: &InfoHash) -> anyhow::Result<bool> {
        let Some(h) = self.handle(ih) else {
            return Ok(false);
        };
        if h.is_paused() {
            if let Err(e) = self.session.unpause(&h).await {
                // Started meanwhile (by the share limits' check, or another call).
                if h.is_paused() {
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Takes torrent `ih` out of the session: it is neither seeded nor fetched any
    /// more (the store is not touched). One whose metadata is not known yet is
    /// paused instead (librqbit cannot drop it). False if the session does not run it.
    pub async fn forget(&self, ih: &InfoHash) -> anyhow::Result<bool> {
        let Some(h) = self.handle(ih) else {
            return Ok(false);
        };
        if h.metadata.load().is_none() {
            return self.pause(ih).await;
        }
        self.session
            .delete(TorrentIdOrHash::Hash(h.info_hash()), false)
            .await?;
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ih);
        Ok(true)
    }
}
