//! The reads of one torrent, `hash` naming it (400 without it, 404 when it is not
//! listed): `torrents/properties`, `files` (pad files left out, named as
//! qBittorrent names them), `trackers`.

use serde_json::{json, Value};

use super::http::{ApiError, Params, Reply};
use super::torrents::{object, Torrent};
use super::Api;
use crate::engine::RunState;
use crate::InfoHash;

/// The torrent `hash` names: 400 without it, 404 if not listed.
fn one(api: &Api, p: &Params) -> Result<Torrent, ApiError> {
    let ih: InfoHash = p
        .need("hash")?
        .trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| ApiError::NotFound)?;
    api.torrent(&ih, &api.labels.get())?
        .ok_or(ApiError::NotFound)
}

/// `torrents/properties`.
pub fn properties(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let t = one(api, p)?;
    let i = t.info(api);
    let pieces = t.meta.as_ref().map_or(0, |m| m.pieces.len());
    let have = (t.progress() * pieces as f64).floor() as usize;
    Ok(Reply::Json(object(vec![
        ("addition_date", json!(i["added_on"])),
        ("comment", json!("")),
        ("completion_date", json!(i["completion_on"])),
        ("created_by", json!("")),
        ("creation_date", json!(-1)),
        ("dl_limit", json!(-1)),
        ("dl_speed", json!(i["dlspeed"])),
        ("dl_speed_avg", json!(i["dlspeed"])),
        ("download_path", json!("")),
        ("eta", json!(i["eta"])),
        ("hash", json!(t.ih)),
        ("infohash_v1", json!(t.ih)),
        ("infohash_v2", json!("")),
        (
            "is_private",
            json!(t.meta.as_ref().is_some_and(|m| m.private)),
        ),
        ("last_seen", json!(i["seen_complete"])),
        ("name", json!(i["name"])),
        (
            "nb_connections",
            json!(i["num_seeds"].as_u64().unwrap_or(0) + i["num_leechs"].as_u64().unwrap_or(0)),
        ),
        ("nb_connections_limit", json!(-1)),
        ("peers", json!(i["num_leechs"])),
        ("peers_total", json!(i["num_leechs"])),
        (
            "piece_size",
            json!(t.meta.as_ref().map_or(0, |m| m.piece_length)),
        ),
        ("pieces_have", json!(have)),
        ("pieces_num", json!(pieces)),
        ("reannounce", json!(0)),
        ("save_path", json!(i["save_path"])),
        ("seeding_time", json!(i["seeding_time"])),
        ("seeds", json!(i["num_seeds"])),
        ("seeds_total", json!(i["num_seeds"])),
        ("share_ratio", json!(i["ratio"])),
        ("time_elapsed", json!(i["time_active"])),
        ("total_downloaded", json!(i["downloaded"])),
        ("total_downloaded_session", json!(i["downloaded"])),
        ("total_size", json!(i["total_size"])),
        ("total_uploaded", json!(i["uploaded"])),
        ("total_uploaded_session", json!(i["uploaded"])),
        ("total_wasted", json!(0)),
        ("up_limit", json!(-1)),
        ("up_speed", json!(i["upspeed"])),
        ("up_speed_avg", json!(i["upspeed"])),
    ])))
}

/// `torrents/files`: every file but pad files, named as qBittorrent names them
/// (under the torrent's folder for a multi-file torrent).
pub fn files(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let t = one(api, p)?;
    let Some(m) = &t.meta else {
        return Ok(Reply::Json(json!([])));
    };
    let progress = t.progress();
    let piece = u64::from(m.piece_length.max(1));
    let out: Vec<Value> = m
        .files
        .iter()
        .filter(|f| !f.pad)
        .enumerate()
        .map(|(i, f)| {
            let name = match m.single_file {
                true => m.name.clone(),
                false => format!("{}/{}", m.name, f.path.join("/")),
            };
            let first = f.offset / piece;
            let last = (f.offset + f.length.max(1) - 1) / piece;
            json!({
                "index": i,
                "name": name,
                "size": f.length,
                "progress": progress,
                "priority": 1,
                "is_seed": t.complete,
                "piece_range": [first, last],
                "availability": if t.complete { 1.0 } else { -1.0 },
            })
        })
        .collect();
    Ok(Reply::Json(Value::Array(out)))
}

/// `torrents/trackers`: the DHT, PeX and LSD rows qBittorrent puts first, then the
/// torrent's trackers (status 2, working, while the torrent runs: librqbit does
/// not say how each announce went).
pub fn trackers(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let t = one(api, p)?;
    let running = t.status.as_ref().is_some_and(|s| s.state == RunState::Live);
    let mut out = Vec::new();
    for name in ["** [DHT] **", "** [PeX] **", "** [LSD] **"] {
        out.push(json!({
            "url": name, "status": 0, "tier": -1, "num_peers": 0, "num_seeds": 0,
            "num_leeches": 0, "num_downloaded": 0, "msg": "",
        }));
    }
    for (tier, url) in t.meta.iter().flat_map(|m| m.trackers.iter()).enumerate() {
        out.push(json!({
            "url": url,
            "status": if running { 2 } else { 1 },
            "tier": tier,
            "num_peers": 0,
            "num_seeds": 0,
            "num_leeches": 0,
            "num_downloaded": -1,
            "msg": "",
        }));
    }
    Ok(Reply::Json(Value::Array(out)))
}
