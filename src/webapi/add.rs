//! `torrents/add`: .torrent files (multipart) and `urls` (magnet links,
//! info-hashes). Everything is checked first (a .torrent that does not parse: 415;
//! a `savepath` outside what the config allows: 400), then labels are written, then
//! the engine is told: with `skip_checking` and a `savepath` the data is adopted
//! from there, piece by piece; otherwise, and for what does not match, fetched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::actions::share_limits_of;
use super::http::{internal, ApiError, Params, Reply};
use super::labels::{valid_category, valid_tag, Labels};
use super::{lock, unix_now, Api};
use crate::engine::{safe_magnet, Source};
use crate::meta::parse::Metainfo;
use crate::InfoHash;

/// The info-hash of a magnet link (hex form; a base32 one is not taken).
fn magnet_hash(m: &str) -> Option<InfoHash> {
    let at = m.find("xt=urn:btih:")? + "xt=urn:btih:".len();
    m.get(at..at + 40)?.to_ascii_lowercase().parse().ok()
}

fn magnet_name(m: &str) -> String {
    let query = m.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "dn")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Api {
    /// An add's `savepath`: the mount (nothing is written there), or a directory
    /// under one of `[http] save-paths` (symlinks resolved). 400 otherwise.
    fn allowed_save_path(&self, s: &str) -> Result<PathBuf, ApiError> {
        let p = Path::new(s);
        let refuse = |why: &str| {
            tracing::warn!("web API: add refused: savepath {s:?} {why}");
            ApiError::BadParams("Fails.".into())
        };
        if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
            return Err(refuse("is not an absolute path without .."));
        }
        if self.opts.mount.as_ref().is_some_and(|m| p.starts_with(m)) {
            return Ok(p.to_path_buf());
        }
        let real = std::fs::canonicalize(p).map_err(|_| refuse("does not exist"))?;
        let inside = self
            .opts
            .save_paths
            .iter()
            .any(|root| std::fs::canonicalize(root).is_ok_and(|root| real.starts_with(root)));
        if !inside {
            return Err(refuse("is outside the config file's [http] save-paths"));
        }
        Ok(real)
    }

    /// Adds a magnet in the background (librqbit asks peers for its metadata
    /// first); listed as `metaDL` meanwhile. Not paused, it is fetched as `cas get`
    /// fetches (a tree's files too).
    fn add_magnet(self: &Arc<Self>, ih: InfoHash, magnet: String, paused: bool) {
        lock(&self.pending).insert(ih, magnet_name(&magnet));
        let api = self.clone();
        tokio::spawn(async move {
            // One the store knows is added from its .torrent: no peers needed.
            let c = api.engine.store().catalog();
            let known = match c.torrent(&ih) {
                Ok(Some(r)) => Some(r.metainfo),
                _ => c.download(&ih).ok().flatten(),
            };
            let r = match (known, paused) {
                (Some(t), _) => api.engine.add(Source::Torrent(t), &[]).await.map(drop),
                (None, true) => api.engine.add(Source::Magnet(magnet), &[]).await.map(drop),
                // As `cas get` inside `cas serve`: a tree's manifest is followed, and
                // what is fetched is kept.
                (None, false) => {
                    let opts = crate::engine::get::GetOptions::default();
                    crate::engine::get::fetch(&api.engine, &magnet, &opts, None, &|_, _| {})
                        .await
                        .map(drop)
                }
            };
            match r {
                Ok(()) if paused => {
                    if let Err(e) = api.engine.pause(&ih).await {
                        tracing::warn!("web API: pausing {ih}: {e:#}");
                    }
                }
                Ok(()) => {}
                Err(e) => tracing::warn!("web API: adding magnet {ih}: {e:#}"),
            }
            lock(&api.pending).remove(&ih);
        });
    }
}

/// `torrents/add`: .torrent files (multipart) and `urls` (magnets, info-hashes).
/// A file that does not parse fails the whole call with 415, nothing added.
pub async fn add(api: &Arc<Api>, p: &Params) -> Result<Reply, ApiError> {
    let urls: Vec<&str> = p
        .get("urls")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let mut files = Vec::new();
    for u in &p.uploads {
        match Metainfo::parse(&u.bytes) {
            Ok(m) => files.push((m, u)),
            Err(e) => {
                tracing::warn!("web API: add refused: {}: {e}", u.file_name);
                return Err(ApiError::BadData("Fails.".into()));
            }
        }
    }
    let mut magnets = Vec::new();
    for u in urls {
        let m = match u.len() == 40 && u.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => format!("magnet:?xt=urn:btih:{}", u.to_ascii_lowercase()),
            false => u.to_string(),
        };
        match (safe_magnet(&m), magnet_hash(&m)) {
            (Ok(_), Some(ih)) => magnets.push((ih, m)),
            _ => tracing::warn!("web API: add: {u:?} is not a magnet link or info-hash"),
        }
    }
    if files.is_empty() && magnets.is_empty() {
        return Ok(Reply::Text("Fails.".into()));
    }
    let save = match p.get("savepath").map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(api.allowed_save_path(s)?),
        None => None,
    };
    let category = p.get("category").unwrap_or("").trim().to_string();
    if !category.is_empty() && !valid_category(&category) {
        return Err(ApiError::BadParams("Incorrect category name".into()));
    }
    let tags: Vec<String> = p
        .get("tags")
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| valid_tag(t))
        .collect();
    let paused = p.flag("paused") || p.flag("stopped");
    let adopt_from = save.filter(|_| p.flag("skip_checking"));
    let ratio: f64 = p.number("ratioLimit")?.unwrap_or(-2.0);
    let minutes: i64 = p.number("seedingTimeLimit")?.unwrap_or(-2);
    let hashes: Vec<InfoHash> = files
        .iter()
        .map(|(m, _)| m.info_hash)
        .chain(magnets.iter().map(|(ih, _)| *ih))
        .collect();
    api.labels.update(|l: &mut Labels| {
        if !category.is_empty() {
            l.categories.entry(category.clone()).or_default();
        }
        l.tags.extend(tags.iter().cloned());
        for ih in &hashes {
            let t = l.torrents.entry(*ih).or_default();
            t.removed = false;
            if !category.is_empty() {
                t.category = category.clone();
            }
            t.tags.extend(tags.iter().cloned());
            if t.added_on == 0 {
                t.added_on = unix_now();
            }
            t.paused = paused;
            t.ratio_limit = ratio;
            t.seeding_time_limit = minutes;
            if let Some(d) = &adopt_from {
                t.adopted_from = Some(d.display().to_string());
            }
        }
        Ok::<_, ApiError>(())
    })?;
    for ih in &hashes {
        api.engine
            .set_share_limits(ih, share_limits_of(ratio, minutes));
    }
    for (meta, upload) in files {
        let bytes = upload.bytes.to_vec();
        // A torrent the store holds whole needs nothing read.
        let held = api.engine.store().catalog().has_torrent(&meta.info_hash);
        if let (Some(dir), false) = (&adopt_from, held) {
            adopt(api, &bytes, &upload.file_name, dir).await?;
        }
        api.engine
            .add(Source::Torrent(bytes), &[])
            .await
            .map_err(|e| internal(format!("{e:#}")))?;
        if paused {
            api.engine
                .pause(&meta.info_hash)
                .await
                .map_err(|e| internal(format!("{e:#}")))?;
        }
    }
    for (ih, m) in magnets {
        api.add_magnet(ih, m, paused);
    }
    Ok(Reply::Text("Ok.".into()))
}

/// cross-seed's add: the data under `dir` adopted (`cas add --data`), each piece
/// checked; pieces already stored cost nothing. What does not match is fetched.
async fn adopt(api: &Api, torrent: &[u8], file_name: &str, dir: &Path) -> Result<(), ApiError> {
    let store = api.engine.store().clone();
    let (torrent, name, dir) = (
        torrent.to_vec(),
        PathBuf::from(file_name),
        dir.to_path_buf(),
    );
    let r = tokio::task::spawn_blocking(move || {
        crate::adopt::add_with_data(&store, &torrent, &name, &dir, None, &|_, _| {})
    })
    .await
    .map_err(internal)?;
    match r {
        Ok((meta, report)) if !report.complete => tracing::info!(
            "web API: {}: {} of {} pieces found under the save path, the rest is fetched",
            meta.info_hash,
            report.pieces_new + report.pieces_known,
            report.pieces
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("web API: adopting from the save path: {e}; fetching"),
    }
    Ok(())
}
