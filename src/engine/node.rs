//! Figures of the node as a whole, for `cas status --json`: speeds, bytes sent and
//! received (since start and all time), peers, the limits in force, the process's
//! CPU time and memory, and the free space under the store.
//!
//! All-time totals are kept in `STORE/engine/totals.json` (`{"uploaded": N,
//! "downloaded": N}`), written atomically once a minute and when the engine stops.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use librqbit::Session;
use serde::{Deserialize, Serialize};

use super::Engine;

/// Payload bytes, all time, as saved.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct Totals {
    pub uploaded: u64,
    pub downloaded: u64,
}

pub(super) fn totals_path(store: &Path) -> PathBuf {
    store.join("engine").join("totals.json")
}

/// The totals saved by earlier runs (none if unreadable: they are figures only).
pub(super) fn load_totals(store: &Path) -> Totals {
    std::fs::read(totals_path(store))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// How often the all-time totals are saved.
const SAVE_EVERY: Duration = Duration::from_secs(60);

/// Saves the totals once a minute until the session goes.
pub(super) async fn keep_totals(path: PathBuf, before: Totals, session: Weak<Session>) {
    loop {
        tokio::time::sleep(SAVE_EVERY).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        save(&path, before, &session);
    }
}

fn save(path: &Path, before: Totals, session: &Session) {
    let c = session.stats_snapshot().counters;
    let now = Totals {
        uploaded: before.uploaded + c.uploaded_bytes,
        downloaded: before.downloaded + c.fetched_bytes,
    };
    if let Ok(bytes) = serde_json::to_vec(&now) {
        if let Err(e) = crate::chunks::durable::write_atomic(path, &bytes) {
            tracing::warn!("saving {}: {e}", path.display());
        }
    }
}

/// The node's figures.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStats {
    /// Payload bytes a second, averaged by librqbit over the last few seconds.
    pub upload_speed: u64,
    pub download_speed: u64,
    /// Payload bytes since the engine started.
    pub uploaded: u64,
    pub downloaded: u64,
    /// Payload bytes over every run on this store.
    pub uploaded_all_time: u64,
    pub downloaded_all_time: u64,
    /// Peers connected now, and those being connected to.
    pub peers: u32,
    pub peers_connecting: u32,
    /// Global limits in force, bytes a second (0: none), and the schedule's period
    /// that set them (from 1), if one does.
    pub upload_limit: u32,
    pub download_limit: u32,
    pub schedule: Option<usize>,
    /// Torrents that stopped seeding at a share limit.
    pub stopped_by_share_limits: usize,
    /// CPU seconds the process has used (user and system), and its resident memory.
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    /// Bytes free to this user on the store's file system.
    pub store_free_bytes: u64,
    pub uptime_seconds: u64,
    /// Torrents the engine serves, and those of them in the session now (the others
    /// are added when a peer asks for one).
    pub torrents: usize,
    pub active_torrents: usize,
}

impl Engine {
    /// The node's figures now.
    pub fn node_stats(&self) -> NodeStats {
        let s = self.session.stats_snapshot();
        let limits = self.limits_in_force();
        let speed = |mbps: f64| (mbps * 1024.0 * 1024.0) as u64;
        NodeStats {
            upload_speed: speed(s.upload_speed.mbps),
            download_speed: speed(s.download_speed.mbps),
            uploaded: s.counters.uploaded_bytes,
            downloaded: s.counters.fetched_bytes,
            uploaded_all_time: self.totals.uploaded + s.counters.uploaded_bytes,
            downloaded_all_time: self.totals.downloaded + s.counters.fetched_bytes,
            peers: s.peers.live,
            peers_connecting: s.peers.connecting,
            upload_limit: limits.map_or(0, |l| l.upload.0),
            download_limit: limits.map_or(0, |l| l.download.0),
            schedule: limits.and_then(|l| l.rule).map(|i| i + 1),
            stopped_by_share_limits: self.stopped_by_share_limits().len(),
            cpu_seconds: cpu_seconds().unwrap_or(0.0),
            memory_bytes: memory_bytes().unwrap_or(0),
            store_free_bytes: free_bytes(self.store.root()).unwrap_or(0),
            uptime_seconds: s.uptime_seconds,
            torrents: match self.on_demand {
                true => self.store.catalog().torrents().map_or(0, |t| t.len()),
                false => self.active_count(),
            },
            active_torrents: self.active_count(),
        }
    }

    /// Saves the all-time totals (at stop).
    pub(super) fn save_totals(&self) {
        save(&totals_path(self.store.root()), self.totals, &self.session);
    }
}

/// User and system CPU time of this process (`/proc/self/stat`, fields 14 and 15).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((u + s) as f64 / hz.max(1) as f64)
}

/// Resident memory of this process (`VmRSS` in `/proc/self/status`).
fn memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Bytes available to this user on the file system holding `path` (statvfs).
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path; `st` is plain data statvfs fills.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}
