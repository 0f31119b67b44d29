//! The torrents as qBittorrent lists them: `torrents/info` (filters, sort, paging)
//! and the fields of each (`Torrent::info`). A torrent is listed when the catalog records
//! it, fetches it, or the engine runs it, unless `delete` took it out of the list.
//! Its state comes from the engine and the catalog (complete means the store holds
//! every piece); its paths are those of the mount (docs/webapi.md).

use std::sync::Arc;

use serde_json::{json, Value};

use super::http::{ApiError, Params, Reply};
use super::labels::{Labels, TorrentLabels};
use super::Api;
use crate::engine::{RunState, TorrentStatus};
use crate::meta::parse::Metainfo;
use crate::InfoHash;

/// qBittorrent's ETA for "never".
pub const MAX_ETA: u64 = 8_640_000;

/// One listed torrent, with what is known of it.
pub struct Torrent {
    pub ih: InfoHash,
    pub meta: Option<Arc<Metainfo>>,
    pub status: Option<TorrentStatus>,
    /// The store holds every piece (the catalog records it).
    pub complete: bool,
    pub labels: TorrentLabels,
    /// A magnet's name while its metadata is asked for.
    pub pending_name: Option<String>,
}

/// What `hashes` names.
pub enum Hashes {
    All,
    Some(Vec<InfoHash>),
}

impl Hashes {
    /// `hashes`: `all`, or info-hashes separated by `|` (those that do not parse are
    /// ignored, as qBittorrent ignores unknown ones).
    pub fn parse(s: &str) -> Hashes {
        if s.trim().eq_ignore_ascii_case("all") {
            return Hashes::All;
        }
        Hashes::Some(
            s.split('|')
                .filter_map(|h| h.trim().to_ascii_lowercase().parse().ok())
                .collect(),
        )
    }

    pub fn contains(&self, ih: &InfoHash) -> bool {
        match self {
            Hashes::All => true,
            Hashes::Some(v) => v.contains(ih),
        }
    }
}

impl Torrent {
    pub fn name(&self) -> String {
        match (&self.meta, &self.status, &self.pending_name) {
            (Some(m), _, _) => m.name.clone(),
            (None, Some(TorrentStatus { name: Some(n), .. }), _) => n.clone(),
            (None, _, Some(n)) if !n.is_empty() => n.clone(),
            _ => self.ih.to_hex(),
        }
    }

    /// Bytes of its files, pad files left out.
    pub fn size(&self) -> u64 {
        self.meta.as_ref().map_or_else(
            || self.status.as_ref().map_or(0, |s| s.total_bytes),
            |m| m.files.iter().filter(|f| !f.pad).map(|f| f.length).sum(),
        )
    }

    pub fn progress(&self) -> f64 {
        if self.complete {
            return 1.0;
        }
        match &self.status {
            Some(s) if s.total_bytes > 0 => s.progress_bytes as f64 / s.total_bytes as f64,
            _ => 0.0,
        }
    }

    fn held_bytes(&self) -> u64 {
        (self.progress() * self.size() as f64).round() as u64
    }

    /// qBittorrent 4.6's state name.
    pub fn state(&self) -> &'static str {
        let up = self.complete || self.status.as_ref().is_some_and(|s| s.finished);
        let Some(s) = &self.status else {
            return match (self.pending_name.is_some(), up) {
                (true, _) => "metaDL",
                (false, true) => "pausedUP",
                (false, false) => "pausedDL",
            };
        };
        match (s.state, up) {
            (RunState::Error, _) => "error",
            (RunState::Paused, true) => "pausedUP",
            (RunState::Paused, false) => "pausedDL",
            (RunState::Checking, _) if !s.has_metadata => "metaDL",
            (RunState::Checking, true) => "checkingUP",
            (RunState::Checking, false) => "checkingDL",
            (RunState::Live, true) if self.labels.force_start => "forcedUP",
            (RunState::Live, true) if s.upload_speed > 0 => "uploading",
            (RunState::Live, true) => "stalledUP",
            (RunState::Live, false) if !s.has_metadata => "metaDL",
            (RunState::Live, false) if self.labels.force_start => "forcedDL",
            (RunState::Live, false) if s.download_speed > 0 => "downloading",
            (RunState::Live, false) => "stalledDL",
        }
    }

    fn uploaded(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| s.uploaded_bytes)
    }

    fn downloaded(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| s.fetched_bytes)
    }

    fn speeds(&self) -> (u64, u64) {
        self.status
            .as_ref()
            .map_or((0, 0), |s| (s.download_speed, s.upload_speed))
    }

    fn eta(&self) -> u64 {
        if self.complete {
            return MAX_ETA;
        }
        self.status
            .as_ref()
            .and_then(|s| s.eta)
            .unwrap_or(MAX_ETA)
            .min(MAX_ETA)
    }

    fn ratio(&self) -> f64 {
        self.uploaded() as f64 / self.size().max(1) as f64
    }

    fn tracker(&self) -> String {
        self.meta
            .as_ref()
            .and_then(|m| m.trackers.first().cloned())
            .unwrap_or_default()
    }

    fn magnet(&self) -> String {
        self.meta.as_ref().map_or_else(
            || format!("magnet:?xt=urn:btih:{}", self.ih),
            |m| m.magnet(),
        )
    }

    /// The `torrents/info` object (qBittorrent 4.6.7's `serialize_torrent.h`).
    pub fn info(&self, api: &Api) -> Value {
        let (dl, up) = self.speeds();
        let (seeds, peers) = self
            .status
            .as_ref()
            .map_or((0, 0), |s| (s.seeders, s.peers.saturating_sub(s.seeders)));
        let size = self.size();
        let seeding = api.seeding_seconds(&self.ih);
        let added = self.labels.added_on;
        object(vec![
            ("added_on", json!(added)),
            ("amount_left", json!(size.saturating_sub(self.held_bytes()))),
            ("auto_tmm", json!(false)),
            (
                "availability",
                json!(if self.complete { 1.0 } else { -1.0 }),
            ),
            ("category", json!(self.labels.category)),
            ("completed", json!(self.held_bytes())),
            (
                "completion_on",
                json!(if self.complete { added } else { -1 }),
            ),
            ("content_path", json!(api.content_path(self))),
            ("dl_limit", json!(-1)),
            ("dlspeed", json!(dl)),
            ("download_path", json!("")),
            ("downloaded", json!(self.downloaded())),
            ("downloaded_session", json!(self.downloaded())),
            ("eta", json!(self.eta())),
            ("f_l_piece_prio", json!(false)),
            ("force_start", json!(self.labels.force_start)),
            ("hash", json!(self.ih)),
            ("inactive_seeding_time_limit", json!(-2)),
            ("infohash_v1", json!(self.ih)),
            ("infohash_v2", json!("")),
            ("last_activity", json!(added)),
            ("magnet_uri", json!(self.magnet())),
            ("max_inactive_seeding_time", json!(-1)),
            ("max_ratio", json!(self.labels.ratio_limit)),
            ("max_seeding_time", json!(self.labels.seeding_time_limit)),
            ("name", json!(self.name())),
            ("num_complete", json!(seeds)),
            ("num_incomplete", json!(peers)),
            ("num_leechs", json!(peers)),
            ("num_seeds", json!(seeds)),
            ("priority", json!(0)),
            ("progress", json!(self.progress())),
            ("ratio", json!(self.ratio())),
            ("ratio_limit", json!(self.labels.ratio_limit)),
            ("save_path", json!(api.save_path(&self.ih))),
            ("seeding_time", json!(seeding)),
            ("seeding_time_limit", json!(self.labels.seeding_time_limit)),
            (
                "seen_complete",
                json!(if self.complete { added } else { 0 }),
            ),
            ("seq_dl", json!(false)),
            ("size", json!(size)),
            ("state", json!(self.state())),
            ("super_seeding", json!(false)),
            (
                "tags",
                json!(self
                    .labels
                    .tags
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")),
            ),
            ("time_active", json!(api.uptime_seconds())),
            ("total_size", json!(size)),
            ("tracker", json!(self.tracker())),
            (
                "trackers_count",
                json!(self.meta.as_ref().map_or(0, |m| m.trackers.len())),
            ),
            ("up_limit", json!(-1)),
            ("uploaded", json!(self.uploaded())),
            ("uploaded_session", json!(self.uploaded())),
            ("upspeed", json!(up)),
        ])
    }
}

/// A JSON object of these fields, in this order.
pub fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Whether a torrent in `state` passes qBittorrent's `filter`.
fn passes(filter: &str, t: &Torrent) -> bool {
    let state = t.state();
    let (dl, up) = t.speeds();
    let paused = state.starts_with("paused");
    let uploading = state.ends_with("UP") && !paused;
    let downloading = matches!(
        state,
        "downloading"
            | "metaDL"
            | "stalledDL"
            | "checkingDL"
            | "pausedDL"
            | "queuedDL"
            | "forcedDL"
    );
    match filter {
        "downloading" => downloading,
        "seeding" => uploading || state == "uploading",
        "completed" => t.complete || state.ends_with("UP") || state == "uploading",
        "paused" | "stopped" => paused,
        "resumed" | "running" => !paused,
        "active" => dl > 0 || up > 0,
        "inactive" => dl == 0 && up == 0,
        "stalled" => state == "stalledUP" || state == "stalledDL",
        "stalled_uploading" => state == "stalledUP",
        "stalled_downloading" => state == "stalledDL",
        "checking" => state.starts_with("checking"),
        "moving" => false,
        "errored" => state == "error" || state == "missingFiles",
        _ => true,
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// `torrents/info`.
pub fn info(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let filter = p.get("filter").unwrap_or("all");
    let hashes = p.get("hashes").map(Hashes::parse);
    let mut out: Vec<Value> = api
        .torrents()?
        .into_iter()
        .filter(|t| passes(filter, t))
        .filter(|t| p.get("category").is_none_or(|c| t.labels.category == c))
        .filter(|t| match p.get("tag") {
            None => true,
            Some("") => t.labels.tags.is_empty(),
            Some(tag) => t.labels.tags.contains(tag),
        })
        .filter(|t| hashes.as_ref().is_none_or(|h| h.contains(&t.ih)))
        .map(|t| t.info(api))
        .collect();
    if let Some(key) = p.get("sort") {
        out.sort_by(|a, b| compare(&a[key], &b[key]));
        if p.flag("reverse") {
            out.reverse();
        }
    }
    let offset: i64 = p.number("offset")?.unwrap_or(0);
    let offset = if offset < 0 {
        (out.len() as i64 + offset).max(0) as usize
    } else {
        offset as usize
    };
    let limit: i64 = p.number("limit")?.unwrap_or(0);
    let out: Vec<Value> = out
        .into_iter()
        .skip(offset)
        .take(if limit > 0 {
            limit as usize
        } else {
            usize::MAX
        })
        .collect();
    Ok(Reply::Json(Value::Array(out)))
}

impl Api {
    /// A torrent's metainfo: its catalog record's, else its download's.
    pub fn meta(&self, ih: &InfoHash) -> Result<Option<Arc<Metainfo>>, ApiError> {
        if let Some(m) = self.lock_metas().get(ih) {
            return Ok(Some(m.clone()));
        }
        let c = self.engine.store().catalog();
        let bytes = match c.torrent(ih)? {
            Some(r) => Some(r.metainfo),
            None => c.download(ih)?,
        };
        let Some(m) = bytes.and_then(|b| Metainfo::parse(&b).ok()) else {
            return Ok(None);
        };
        let m = Arc::new(m);
        self.lock_metas().insert(*ih, m.clone());
        Ok(Some(m))
    }

    /// Torrent `ih` if it is listed.
    pub fn torrent(&self, ih: &InfoHash, labels: &Labels) -> Result<Option<Torrent>, ApiError> {
        if labels.is_removed(ih) {
            return Ok(None);
        }
        let c = self.engine.store().catalog();
        let complete = c.has_torrent(ih);
        let status = self.engine.status(ih);
        let pending_name = self.pending_name(ih);
        if !complete && status.is_none() && pending_name.is_none() && !c.is_downloading(ih) {
            return Ok(None);
        }
        let mut l = labels.of(ih);
        if l.added_on == 0 {
            l.added_on = self.started;
        }
        Ok(Some(Torrent {
            ih: *ih,
            meta: self.meta(ih)?,
            status,
            complete,
            labels: l,
            pending_name,
        }))
    }

    /// Every listed torrent, by info-hash.
    pub fn torrents(&self) -> Result<Vec<Torrent>, ApiError> {
        let c = self.engine.store().catalog();
        let mut all = c.torrents()?;
        all.extend(c.downloads()?);
        all.extend(self.engine.running());
        all.extend(self.pending_hashes());
        all.sort();
        all.dedup();
        let labels = self.labels.get();
        let mut out = Vec::with_capacity(all.len());
        for ih in all {
            if let Some(t) = self.torrent(&ih, &labels)? {
                out.push(t);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torrent(complete: bool, state: RunState, up: u64, down: u64, metadata: bool) -> Torrent {
        Torrent {
            ih: InfoHash([7; 20]),
            meta: None,
            status: Some(TorrentStatus {
                name: None,
                state,
                has_metadata: metadata,
                finished: complete,
                progress_bytes: if complete { 10 } else { 5 },
                total_bytes: 10,
                uploaded_bytes: 0,
                fetched_bytes: 0,
                download_speed: down,
                upload_speed: up,
                peers: 0,
                seeders: 0,
                eta: None,
                error: None,
            }),
            complete,
            labels: TorrentLabels::default(),
            pending_name: None,
        }
    }

    #[test]
    fn states_and_filters_are_qbittorrents() {
        use RunState::*;
        let cases = [
            (
                torrent(true, Live, 0, 0, true),
                "stalledUP",
                &["seeding", "completed", "inactive", "running", "stalled"][..],
            ),
            (
                torrent(true, Live, 5, 0, true),
                "uploading",
                &["seeding", "completed", "active"][..],
            ),
            (
                torrent(true, Paused, 0, 0, true),
                "pausedUP",
                &["paused", "stopped", "completed"][..],
            ),
            (
                torrent(false, Live, 0, 9, true),
                "downloading",
                &["downloading", "active", "resumed"][..],
            ),
            (
                torrent(false, Live, 0, 0, false),
                "metaDL",
                &["downloading"][..],
            ),
            (
                torrent(false, Paused, 0, 0, true),
                "pausedDL",
                &["downloading", "paused"][..],
            ),
            (
                torrent(false, Checking, 0, 0, true),
                "checkingDL",
                &["checking", "downloading"][..],
            ),
            (torrent(false, Error, 0, 0, true), "error", &["errored"][..]),
        ];
        for (t, state, filters) in cases {
            assert_eq!(t.state(), state);
            for f in filters {
                assert!(passes(f, &t), "{state} passes {f}");
            }
            assert!(passes("all", &t));
        }
        let seeding = torrent(true, Live, 0, 0, true);
        for f in ["downloading", "paused", "errored", "checking", "active"] {
            assert!(!passes(f, &seeding), "stalledUP does not pass {f}");
        }
        assert_eq!(torrent(false, Live, 0, 0, true).progress(), 0.5);
    }

    #[test]
    fn hashes_parse_as_qbittorrent_reads_them() {
        let a = "0123456789abcdef0123456789abcdef01234567";
        let h = Hashes::parse(&format!("{}|nothex|", a.to_uppercase()));
        assert!(h.contains(&a.parse().unwrap()));
        assert!(!h.contains(&InfoHash([0; 20])));
        assert!(Hashes::parse("all").contains(&InfoHash([0; 20])));
    }
}
