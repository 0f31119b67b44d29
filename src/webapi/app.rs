//! `app/*` and `transfer/info`: who answers (qBittorrent 4.6.7, API 2.9.3), the
//! preferences the tools read (the save path is the mount; share limits are the
//! engine's; queueing is off), and the node's transfer figures.

use serde_json::{json, Value};

use super::http::{ApiError, Reply};
use super::{Api, API_VERSION, VERSION};

pub fn call(api: &Api, name: &str) -> Result<Reply, ApiError> {
    Ok(match name {
        "app/version" => Reply::Text(VERSION.into()),
        "app/webapiVersion" => Reply::Text(API_VERSION.into()),
        "app/buildInfo" => Reply::Json(json!({
            "qt": "", "libtorrent": "", "boost": "", "openssl": "", "zlib": "",
            "bitness": 64, "cas": env!("CARGO_PKG_VERSION"),
        })),
        "app/defaultSavePath" => Reply::Text(api.default_save_path()),
        "app/preferences" => Reply::Json(preferences(api)),
        // Accepted and ignored: cas's settings are its config file's.
        "app/setPreferences" => Reply::ok(),
        "transfer/info" => Reply::Json(transfer_info(api)),
        _ => return Err(ApiError::NotFound),
    })
}

fn preferences(api: &Api) -> Value {
    let limits = api.engine.limits();
    let node = api.engine.node_stats();
    let seed_minutes = limits.seed_time.map_or(-1, |d| (d.as_secs() / 60) as i64);
    json!({
        "save_path": api.default_save_path(),
        "temp_path_enabled": false,
        "temp_path": "",
        "auto_tmm_enabled": false,
        "torrent_content_layout": "Original",
        "start_paused_enabled": false,
        "max_ratio_enabled": limits.ratio.is_some(),
        "max_ratio": limits.ratio.unwrap_or(-1.0),
        "max_seeding_time_enabled": limits.seed_time.is_some(),
        "max_seeding_time": seed_minutes,
        "max_inactive_seeding_time_enabled": false,
        "max_inactive_seeding_time": -1,
        "max_ratio_act": 0,
        "queueing_enabled": false,
        "max_active_downloads": -1,
        "max_active_torrents": -1,
        "max_active_uploads": -1,
        "dht": false,
        "pex": true,
        "lsd": false,
        "listen_port": api.engine.listen_addr().port(),
        "web_ui_port": api.local.port(),
        "web_ui_address": api.local.ip().to_string(),
        "bypass_local_auth": api.sessions.open(),
        "resume_data_storage_type": "Legacy",
        "up_limit": node.upload_limit,
        "dl_limit": node.download_limit,
    })
}

fn transfer_info(api: &Api) -> Value {
    let n = api.engine.node_stats();
    json!({
        "dl_info_speed": n.download_speed,
        "dl_info_data": n.downloaded,
        "up_info_speed": n.upload_speed,
        "up_info_data": n.uploaded,
        "dl_rate_limit": n.download_limit,
        "up_rate_limit": n.upload_limit,
        "dht_nodes": 0,
        "connection_status": "connected",
    })
}
