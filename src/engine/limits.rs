//! Rate and share limits: the session's global upload and download limits (set from
//! a weekly [`Schedule`] once a second, changed on the fly), each torrent's (set as
//! it is added), and share limits (ratio, seeding time) after which a torrent that
//! is complete stops seeding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use librqbit::limits::LimitsConfig;
use librqbit::Session;

use super::Engine;
use crate::config::{Clock, InForce, Rate, Schedule};
use crate::InfoHash;

/// Limits the engine runs under.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Global limits, and the periods of alternative ones.
    pub schedule: Schedule,
    /// Each torrent's upload limit (0: none).
    pub torrent_upload: Rate,
    /// Each torrent's download limit (0: none).
    pub torrent_download: Rate,
    /// A complete torrent stops seeding once it has sent this many times its size.
    pub ratio: Option<f64>,
    /// A complete torrent stops seeding after seeding this long.
    pub seed_time: Option<Duration>,
}

impl Limits {
    pub(super) fn per_torrent(&self) -> LimitsConfig {
        LimitsConfig {
            upload_bps: self.torrent_upload.limit(),
            download_bps: self.torrent_download.limit(),
        }
    }
}

/// One share limit of one torrent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Limit<T> {
    /// The engine's ([`Limits::ratio`], [`Limits::seed_time`]).
    #[default]
    Global,
    /// None for this torrent.
    Unlimited,
    At(T),
}

impl<T: Copy> Limit<T> {
    fn or(self, global: Option<T>) -> Option<T> {
        match self {
            Limit::Global => global,
            Limit::Unlimited => None,
            Limit::At(v) => Some(v),
        }
    }
}

/// A torrent's own share limits, in place of the engine's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShareLimits {
    pub ratio: Limit<f64>,
    pub seed_time: Limit<Duration>,
}

/// What the limits task shares with the engine.
#[derive(Default)]
pub(super) struct LimitState {
    limits: Mutex<Limits>,
    /// Torrents with share limits of their own.
    own: Mutex<HashMap<InfoHash, ShareLimits>>,
    in_force: Mutex<Option<InForce>>,
    /// When each torrent was first seen complete, and whether it was stopped.
    seeding: Mutex<HashMap<InfoHash, (Instant, bool)>>,
}

impl LimitState {
    pub(super) fn new(limits: Limits) -> Arc<LimitState> {
        Arc::new(LimitState {
            limits: Mutex::new(limits),
            ..Default::default()
        })
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How often the schedule and the share limits are looked at.
const TICK: Duration = Duration::from_secs(1);

/// Applies the schedule's limits whenever they change, and stops complete torrents
/// past their share limits, until the session goes.
pub(super) async fn run(state: Arc<LimitState>, session: Weak<Session>, clock: Clock) {
    loop {
        let Some(session) = session.upgrade() else {
            return;
        };
        let limits = state.limits();
        let now = limits.schedule.limits_at(clock.now());
        let changed = {
            let mut f = state.in_force.lock().unwrap_or_else(|e| e.into_inner());
            let changed = *f != Some(now);
            *f = Some(now);
            changed
        };
        if changed {
            session.ratelimits.set_upload_bps(now.upload.limit());
            session.ratelimits.set_download_bps(now.download.limit());
            tracing::info!(
                "limits now: upload {}, download {}{}",
                now.upload,
                now.download,
                now.rule
                    .map_or(String::new(), |i| format!(" (schedule {})", i + 1))
            );
        }
        per_torrent(&session, &limits);
        // Also when no limit is set: it notes when each torrent became complete.
        stop_shared_enough(&state, &session, &limits).await;
        drop(session);
        tokio::time::sleep(TICK).await;
    }
}

/// Gives every running torrent the per-torrent limits in force: after a reload, and
/// after a torrent is restarted (librqbit starts it again with the limits it was
/// added with).
fn per_torrent(session: &Session, limits: &Limits) {
    let (up, down) = (
        limits.torrent_upload.limit(),
        limits.torrent_download.limit(),
    );
    session.with_torrents(|ts| {
        for (_, h) in ts {
            let Some(live) = h.live() else { continue };
            let l = live.ratelimits();
            if l.get_upload_bps() != up {
                l.set_upload_bps(up);
            }
            if l.get_download_bps() != down {
                l.set_download_bps(down);
            }
        }
    });
}

/// Pauses every complete torrent that has sent `ratio` times its size, or seeded
/// for `seed_time`, since the engine started.
async fn stop_shared_enough(state: &LimitState, session: &Arc<Session>, limits: &Limits) {
    let handles: Vec<_> = session.with_torrents(|ts| ts.map(|(_, h)| h.clone()).collect());
    for h in handles {
        let stats = h.stats();
        if !stats.finished || h.is_paused() {
            continue;
        }
        let ih = InfoHash(h.info_hash().0);
        let since = {
            let mut seeding = state.seeding.lock().unwrap_or_else(|e| e.into_inner());
            let e = seeding.entry(ih).or_insert((Instant::now(), false));
            if e.1 {
                continue;
            }
            e.0
        };
        let own = state
            .own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ih)
            .copied()
            .unwrap_or_default();
        let ratio = stats.uploaded_bytes as f64 / stats.total_bytes.max(1) as f64;
        let why = match (
            own.ratio.or(limits.ratio),
            own.seed_time.or(limits.seed_time),
        ) {
            (Some(r), _) if ratio >= r => format!("ratio {ratio:.2} reached {r}"),
            (_, Some(t)) if since.elapsed() >= t => {
                format!("seeded {} s", since.elapsed().as_secs())
            }
            _ => continue,
        };
        match session.pause(&h).await {
            Ok(()) => {
                tracing::info!("torrent {ih}: {why}: stopped seeding");
                if let Some(e) = state
                    .seeding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&ih)
                {
                    e.1 = true;
                }
            }
            Err(e) => tracing::warn!("torrent {ih}: stopping it: {e:#}"),
        }
    }
}

impl Engine {
    /// Replaces the limits (a config file read again): global, per-torrent and
    /// share limits and the schedule take effect within a second.
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// The limits the engine runs under.
    pub fn limits(&self) -> Limits {
        self.limits.limits()
    }

    /// Gives torrent `ih` share limits of its own (all [`Limit::Global`]: the
    /// engine's again). A torrent a limit stopped is looked at again under them.
    pub fn set_share_limits(&self, ih: &InfoHash, limits: ShareLimits) {
        let mut own = self.limits.own.lock().unwrap_or_else(|e| e.into_inner());
        if limits == ShareLimits::default() {
            own.remove(ih);
        } else {
            own.insert(*ih, limits);
        }
        drop(own);
        let mut seeding = self
            .limits
            .seeding
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = seeding.get_mut(ih) {
            e.1 = false;
        }
    }

    /// Torrent `ih`'s own share limits.
    pub fn share_limits(&self, ih: &InfoHash) -> ShareLimits {
        let own = self.limits.own.lock().unwrap_or_else(|e| e.into_inner());
        own.get(ih).copied().unwrap_or_default()
    }

    /// How long torrent `ih` has been seen complete since the engine started.
    pub fn seeding_for(&self, ih: &InfoHash) -> Option<Duration> {
        let seeding = self
            .limits
            .seeding
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        seeding.get(ih).map(|(since, _)| since.elapsed())
    }

    /// The global limits in force, once the engine has set them.
    pub fn limits_in_force(&self) -> Option<InForce> {
        *self
            .limits
            .in_force
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The torrents stopped by a share limit.
    pub fn stopped_by_share_limits(&self) -> Vec<InfoHash> {
        let seeding = self
            .limits
            .seeding
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        seeding
            .iter()
            .filter(|(_, (_, stopped))| *stopped)
            .map(|(ih, _)| *ih)
            .collect()
    }
}
