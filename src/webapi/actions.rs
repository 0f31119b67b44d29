//! The calls that change a torrent's state: `delete`, pause and resume (and their
//! 5.0 names stop and start), recheck, reannounce, share limits, force start, and
//! the dispatch of every `torrents/*` call. Every parameter is checked before
//! anything is changed; labels are written before the engine is told.

use std::sync::Arc;

use serde_json::json;

use super::http::{internal, ApiError, Params, Reply};
use super::labels::{Labels, TorrentLabels};
use super::torrents::{self, Hashes};
use super::{add, categories, properties, Api};
use crate::engine::{Limit, ShareLimits};
use crate::InfoHash;

pub async fn call(api: &Arc<Api>, name: &str, p: &Params) -> Result<Reply, ApiError> {
    match name {
        "torrents/info" => torrents::info(api, p),
        "torrents/properties" => properties::properties(api, p),
        "torrents/files" => properties::files(api, p),
        "torrents/trackers" => properties::trackers(api, p),
        "torrents/categories" => Ok(categories::categories(api)),
        "torrents/tags" => Ok(Reply::Json(json!(api.labels.get().tags))),
        "torrents/add" => add::add(api, p).await,
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
        "torrents/setCategory" => categories::set_category(api, p),
        n @ ("torrents/createCategory" | "torrents/editCategory") => {
            categories::edit_category(api, p, n.ends_with("createCategory"))
        }
        "torrents/removeCategories" => categories::remove_categories(api, p),
        "torrents/createTags"
        | "torrents/deleteTags"
        | "torrents/addTags"
        | "torrents/removeTags" => categories::tags(api, name, p),
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

pub fn share_limits_of(ratio: f64, minutes: i64) -> ShareLimits {
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

/// The listed torrents `hashes` names (400 without it).
pub fn chosen(api: &Api, p: &Params) -> Result<Vec<InfoHash>, ApiError> {
    let hashes = Hashes::parse(p.need("hashes")?);
    Ok(api
        .torrents()?
        .into_iter()
        .map(|t| t.ih)
        .filter(|ih| hashes.contains(ih))
        .collect())
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
