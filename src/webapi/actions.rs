//! The calls that change something: `torrents/add`, `delete`, pause and resume
//! (and their 5.0 names stop and start), recheck, reannounce, share limits, force
//! start, categories and tags. Every parameter is checked before anything is
//! changed; labels are written before the engine is told.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::http::{internal, ApiError, Params, Reply};
use super::labels::{valid_category, valid_tag, Category, Labels, TorrentLabels};
use super::torrents::{self, Hashes};
use super::{lock, unix_now, Api};
use crate::engine::{safe_magnet, Limit, ShareLimits, Source};
use crate::meta::parse::Metainfo;
use crate::InfoHash;

pub async fn call(api: &Arc<Api>, name: &str, p: &Params) -> Result<Reply, ApiError> {
    match name {
        "torrents/info" => torrents::info(api, p),
        "torrents/properties" => torrents::properties(api, p),
        "torrents/files" => torrents::files(api, p),
        "torrents/trackers" => torrents::trackers(api, p),
        "torrents/categories" => Ok(categories(api)),
        "torrents/tags" => Ok(Reply::Json(json!(api.labels.get().tags))),
        "torrents/add" => add(api, p).await,
        "torrents/delete" => delete(api, p).await,
        "torrents/pause" | "torrents/stop" => pause(api, p, true).await,
        "torrents/resume" | "torrents/start" => pause(api, p, false).await,
        "torrents/recheck" | "torrents/reannounce" => restart(api, p).await,
        "torrents/setShareLimits" => share_limits(api, p),
        "torrents/setForceStart" => force_start(api, p).await,
        "torrents/setAutoManagement" => {
            p.need("hashes")?;
            Ok(Reply::ok())
        }
        "torrents/topPrio"
        | "torrents/bottomPrio"
        | "torrents/increasePrio"
        | "torrents/decreasePrio" => {
            p.need("hashes")?;
            Err(ApiError::Conflict(
                "Torrent queueing must be enabled".into(),
            ))
        }
        "torrents/setCategory" => set_category(api, p),
        n @ ("torrents/createCategory" | "torrents/editCategory") => {
            edit_category(api, p, n.ends_with("createCategory"))
        }
        "torrents/removeCategories" => remove_categories(api, p),
        "torrents/createTags"
        | "torrents/deleteTags"
        | "torrents/addTags"
        | "torrents/removeTags" => tags(api, name, p),
        _ => Err(ApiError::NotFound),
    }
}

/// At start: torrents paused or taken out of the list through the API stay so;
/// their share limits are the engine's again.
pub async fn restore(api: &Api) {
    for (ih, t) in api.labels.get().torrents {
        api.engine
            .set_share_limits(&ih, share_limits_of(t.ratio_limit, t.seeding_time_limit));
        let r = if t.removed {
            api.engine.forget(&ih).await
        } else if t.paused {
            api.engine.pause(&ih).await
        } else {
            continue;
        };
        if let Err(e) = r {
            tracing::warn!("web API: torrent {ih}: {e:#}");
        }
    }
}

fn share_limits_of(ratio: f64, minutes: i64) -> ShareLimits {
    ShareLimits {
        ratio: match ratio {
            r if r <= -2.0 => Limit::Global,
            r if r < 0.0 => Limit::Unlimited,
            r => Limit::At(r),
        },
        seed_time: match minutes {
            m if m <= -2 => Limit::Global,
            m if m < 0 => Limit::Unlimited,
            m => Limit::At(std::time::Duration::from_secs(m as u64 * 60)),
        },
    }
}

fn categories(api: &Api) -> Reply {
    let mut out = Map::new();
    for (name, c) in api.labels.get().categories {
        out.insert(name.clone(), json!({"name": name, "savePath": c.save_path}));
    }
    Reply::Json(Value::Object(out))
}

/// The listed torrents `hashes` names (400 without it).
fn chosen(api: &Api, p: &Params) -> Result<Vec<InfoHash>, ApiError> {
    let hashes = Hashes::parse(p.need("hashes")?);
    Ok(api
        .torrents()?
        .into_iter()
        .map(|t| t.ih)
        .filter(|ih| hashes.contains(ih))
        .collect())
}

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
    /// first); listed as `metaDL` meanwhile.
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
            let source = known.map_or(Source::Magnet(magnet), Source::Torrent);
            match api.engine.add(source, &[]).await {
                Ok(_) if paused => {
                    if let Err(e) = api.engine.pause(&ih).await {
                        tracing::warn!("web API: pausing {ih}: {e:#}");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("web API: adding magnet {ih}: {e:#}"),
            }
            lock(&api.pending).remove(&ih);
        });
    }
}

/// `torrents/add`: .torrent files (multipart) and `urls` (magnets, info-hashes).
/// A file that does not parse fails the whole call with 415, nothing added.
async fn add(api: &Arc<Api>, p: &Params) -> Result<Reply, ApiError> {
    let urls: Vec<&str> = p
        .get("urls")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() && p.uploads.is_empty() {
        return Err(ApiError::missing("urls or torrents"));
    }
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
        if let Some(dir) = &adopt_from {
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

/// `torrents/delete`: out of the list and no longer seeded; with `deleteFiles`,
/// no longer kept either (gc then frees what nothing else uses).
async fn delete(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let files = p.flag("deleteFiles");
    let chosen = chosen(api, p)?;
    api.labels.update(|l: &mut Labels| {
        for ih in &chosen {
            // Forgotten, as qBittorrent forgets a torrent it removes.
            let removed = TorrentLabels {
                removed: true,
                ..Default::default()
            };
            l.torrents.insert(*ih, removed);
        }
        Ok::<_, ApiError>(())
    })?;
    for ih in &chosen {
        api.engine
            .forget(ih)
            .await
            .map_err(|e| internal(format!("{e:#}")))?;
        api.engine.set_share_limits(ih, ShareLimits::default());
        if files {
            crate::remove::remove_torrent(api.engine.store(), ih)?;
        }
    }
    Ok(Reply::ok())
}

async fn pause(api: &Api, p: &Params, paused: bool) -> Result<Reply, ApiError> {
    let chosen = chosen(api, p)?;
    api.labels.update(|l: &mut Labels| {
        for ih in &chosen {
            l.torrents.entry(*ih).or_default().paused = paused;
        }
        Ok::<_, ApiError>(())
    })?;
    for ih in &chosen {
        let r = match paused {
            true => api.engine.pause(ih).await,
            false => api.engine.resume(ih).await,
        };
        r.map_err(|e| internal(format!("{e:#}")))?;
    }
    Ok(Reply::ok())
}

/// `recheck`, `reannounce`: the torrent stopped and started again, which asks the
/// store what it holds and the trackers for peers.
async fn restart(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let labels = api.labels.get();
    for ih in chosen(api, p)? {
        if labels.of(&ih).paused {
            continue;
        }
        let r = async {
            api.engine.pause(&ih).await?;
            api.engine.resume(&ih).await
        };
        r.await.map_err(|e| internal(format!("{e:#}")))?;
    }
    Ok(Reply::ok())
}

fn share_limits(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let ratio: f64 = p
        .number("ratioLimit")?
        .ok_or_else(|| ApiError::missing("ratioLimit"))?;
    let minutes: i64 = p
        .number("seedingTimeLimit")?
        .ok_or_else(|| ApiError::missing("seedingTimeLimit"))?;
    let chosen = chosen(api, p)?;
    api.labels.update(|l: &mut Labels| {
        for ih in &chosen {
            let t = l.torrents.entry(*ih).or_default();
            t.ratio_limit = ratio;
            t.seeding_time_limit = minutes;
        }
        Ok::<_, ApiError>(())
    })?;
    for ih in &chosen {
        api.engine
            .set_share_limits(ih, share_limits_of(ratio, minutes));
    }
    Ok(Reply::ok())
}

async fn force_start(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let value = p.flag("value");
    let chosen = chosen(api, p)?;
    api.labels.update(|l: &mut Labels| {
        for ih in &chosen {
            let t = l.torrents.entry(*ih).or_default();
            t.force_start = value;
            if value {
                t.paused = false;
            }
        }
        Ok::<_, ApiError>(())
    })?;
    if value {
        for ih in &chosen {
            api.engine
                .resume(ih)
                .await
                .map_err(|e| internal(format!("{e:#}")))?;
        }
    }
    Ok(Reply::ok())
}

fn set_category(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let category = p.need("category")?.trim().to_string();
    let chosen = chosen(api, p)?;
    api.labels.update(|l: &mut Labels| {
        if !category.is_empty() && !l.categories.contains_key(&category) {
            return Err(ApiError::Conflict("Incorrect category name".into()));
        }
        for ih in &chosen {
            l.torrents.entry(*ih).or_default().category = category.clone();
        }
        Ok(())
    })?;
    Ok(Reply::ok())
}

fn edit_category(api: &Api, p: &Params, create: bool) -> Result<Reply, ApiError> {
    let name = p.need("category")?.trim().to_string();
    let save_path = p.get("savePath").unwrap_or("").trim().to_string();
    if name.is_empty() {
        return Err(ApiError::BadParams("Category cannot be empty".into()));
    }
    if !valid_category(&name) {
        return Err(ApiError::BadParams("Incorrect category name".into()));
    }
    api.labels.update(|l: &mut Labels| {
        match (create, l.categories.contains_key(&name)) {
            (true, true) => return Err(ApiError::Conflict("Unable to create category".into())),
            (false, false) => return Err(ApiError::Conflict("Unable to edit category".into())),
            _ => {}
        }
        l.categories.insert(
            name.clone(),
            Category {
                save_path: save_path.clone(),
            },
        );
        Ok(())
    })?;
    Ok(Reply::ok())
}

fn remove_categories(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let names: Vec<String> = p
        .need("categories")?
        .lines()
        .map(|c| c.trim().to_string())
        .collect();
    api.labels.update(|l: &mut Labels| {
        for n in &names {
            l.categories.remove(n);
        }
        for t in l.torrents.values_mut() {
            if names.contains(&t.category) {
                t.category.clear();
            }
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(Reply::ok())
}

fn tags(api: &Api, name: &str, p: &Params) -> Result<Reply, ApiError> {
    let raw = match name {
        "torrents/removeTags" => p.get("tags").unwrap_or(""),
        _ => p.need("tags")?,
    };
    let tags: Vec<String> = raw
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| valid_tag(t))
        .collect();
    let chosen = match name {
        "torrents/addTags" | "torrents/removeTags" => chosen(api, p)?,
        _ => Vec::new(),
    };
    api.labels.update(|l: &mut Labels| {
        match name {
            "torrents/createTags" => l.tags.extend(tags.iter().cloned()),
            "torrents/addTags" => {
                l.tags.extend(tags.iter().cloned());
                for ih in &chosen {
                    l.torrents
                        .entry(*ih)
                        .or_default()
                        .tags
                        .extend(tags.iter().cloned());
                }
            }
            "torrents/removeTags" => {
                for ih in &chosen {
                    let t = l.torrents.entry(*ih).or_default();
                    match tags.is_empty() {
                        true => t.tags.clear(),
                        false => t.tags.retain(|x| !tags.contains(x)),
                    }
                }
            }
            _ => {
                for tag in &tags {
                    l.tags.remove(tag);
                }
                for t in l.torrents.values_mut() {
                    t.tags.retain(|x| !tags.contains(x));
                }
            }
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(Reply::ok())
}
