//! `sync/maindata`, which web UIs and exporters poll: the first answer (and any
//! whose `rid` is not the last one given to that session) is a full update; the
//! next ones, asked with the `rid` just received, carry only what changed: changed
//! fields of each torrent, new categories and tags, and what was removed.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::http::{ApiError, Params, Reply};
use super::{lock, Api};

/// What one session was last sent.
#[derive(Clone, Default)]
struct Sent {
    rid: i64,
    torrents: Map<String, Value>,
    categories: Map<String, Value>,
    tags: Vec<Value>,
    server_state: Map<String, Value>,
}

/// Per session, the last answer.
#[derive(Default)]
pub struct Syncs {
    by_session: Mutex<HashMap<String, Sent>>,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn now(api: &Api) -> Result<Sent, ApiError> {
    let mut torrents = Map::new();
    for t in api.torrents()? {
        let mut info = object(t.info(api));
        info.remove("hash");
        torrents.insert(t.ih.to_hex(), Value::Object(info));
    }
    let mut categories = Map::new();
    let labels = api.labels.get();
    for (name, c) in &labels.categories {
        categories.insert(name.clone(), json!({"name": name, "savePath": c.save_path}));
    }
    let n = api.engine.node_stats();
    let server_state = object(json!({
        "alltime_dl": n.downloaded_all_time,
        "alltime_ul": n.uploaded_all_time,
        "connection_status": "connected",
        "dht_nodes": 0,
        "dl_info_data": n.downloaded,
        "dl_info_speed": n.download_speed,
        "dl_rate_limit": n.download_limit,
        "free_space_on_disk": n.store_free_bytes,
        "global_ratio": format!("{:.2}", n.uploaded_all_time as f64 / n.downloaded_all_time.max(1) as f64),
        "queueing": false,
        "refresh_interval": 1500,
        "total_peer_connections": n.peers,
        "up_info_data": n.uploaded,
        "up_info_speed": n.upload_speed,
        "up_rate_limit": n.upload_limit,
        "use_alt_speed_limits": n.schedule.is_some(),
    }));
    Ok(Sent {
        rid: 0,
        torrents,
        categories,
        tags: labels.tags.into_iter().map(Value::String).collect(),
        server_state,
    })
}

/// Fields of `now` that differ from `before`.
fn changed(before: &Map<String, Value>, now: &Map<String, Value>) -> Map<String, Value> {
    now.iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Keys of `before` that `now` lacks.
fn gone(before: &Map<String, Value>, now: &Map<String, Value>) -> Vec<Value> {
    before
        .keys()
        .filter(|k| !now.contains_key(*k))
        .map(|k| Value::String(k.clone()))
        .collect()
}

pub fn maindata(api: &Api, p: &Params, session: &str) -> Result<Reply, ApiError> {
    let rid: i64 = p.number("rid")?.unwrap_or(0);
    let mut next = now(api)?;
    let mut syncs = lock(&api.syncs.by_session);
    let last = syncs.get(session).filter(|s| rid != 0 && s.rid == rid);
    next.rid = syncs.get(session).map_or(0, |s| s.rid) % 1_000_000 + 1;
    let mut out = Map::new();
    out.insert("rid".into(), json!(next.rid));
    match last {
        None => {
            out.insert("full_update".into(), json!(true));
            out.insert("torrents".into(), Value::Object(next.torrents.clone()));
            out.insert("categories".into(), Value::Object(next.categories.clone()));
            out.insert("tags".into(), Value::Array(next.tags.clone()));
            out.insert(
                "server_state".into(),
                Value::Object(next.server_state.clone()),
            );
            out.insert("trackers".into(), json!({}));
        }
        Some(before) => {
            let mut torrents = Map::new();
            for (ih, t) in &next.torrents {
                let fields = match before.torrents.get(ih) {
                    Some(Value::Object(b)) => changed(b, &object(t.clone())),
                    _ => object(t.clone()),
                };
                if !fields.is_empty() {
                    torrents.insert(ih.clone(), Value::Object(fields));
                }
            }
            let mut put = |k: &str, v: Value, empty: bool| {
                if !empty {
                    out.insert(k.into(), v);
                }
            };
            put(
                "torrents",
                Value::Object(torrents.clone()),
                torrents.is_empty(),
            );
            let removed = gone(&before.torrents, &next.torrents);
            put(
                "torrents_removed",
                Value::Array(removed.clone()),
                removed.is_empty(),
            );
            let cats = changed(&before.categories, &next.categories);
            put("categories", Value::Object(cats.clone()), cats.is_empty());
            let cats_gone = gone(&before.categories, &next.categories);
            put(
                "categories_removed",
                Value::Array(cats_gone.clone()),
                cats_gone.is_empty(),
            );
            let tags: Vec<Value> = next
                .tags
                .iter()
                .filter(|t| !before.tags.contains(t))
                .cloned()
                .collect();
            put("tags", Value::Array(tags.clone()), tags.is_empty());
            let tags_gone: Vec<Value> = before
                .tags
                .iter()
                .filter(|t| !next.tags.contains(t))
                .cloned()
                .collect();
            put(
                "tags_removed",
                Value::Array(tags_gone.clone()),
                tags_gone.is_empty(),
            );
            let state = changed(&before.server_state, &next.server_state);
            put(
                "server_state",
                Value::Object(state.clone()),
                state.is_empty(),
            );
        }
    }
    syncs.insert(session.to_string(), next);
    Ok(Reply::Json(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_changed_and_what_went_are_sent() {
        let before = object(json!({"a": {"x": 1}, "b": 2, "c": 3}));
        let now = object(json!({"a": {"x": 1}, "b": 5, "d": 4}));
        assert_eq!(
            Value::Object(changed(&before, &now)),
            json!({"b": 5, "d": 4})
        );
        assert_eq!(gone(&before, &now), vec![json!("c")]);
    }
}
