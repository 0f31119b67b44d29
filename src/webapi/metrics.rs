//! `GET /metrics`: the node, the store and each torrent in Prometheus' text format
//! (version 0.0.4). Names begin with `cas_`; bytes are `_bytes`, counters `_total`.
//! The store's figures are `cas stats`'s (`stats::stats`), read on a blocking
//! thread: they walk the index.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::http::{internal, ApiError, Reply};
use super::Api;

/// Text being built, one family at a time.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value escaped: backslash, double quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(api: &Api) -> Result<Reply, ApiError> {
    let store = api.engine.store().clone();
    let s = tokio::task::spawn_blocking(move || crate::stats::stats(&store))
        .await
        .map_err(internal)??;
    let n = api.engine.node_stats();
    let torrents = api.torrents()?;
    let mut t = Text::default();
    t.one(
        "cas_uploaded_bytes_total",
        "counter",
        "Payload bytes sent to peers since start.",
        n.uploaded as f64,
    );
    t.one(
        "cas_downloaded_bytes_total",
        "counter",
        "Payload bytes received from peers since start.",
        n.downloaded as f64,
    );
    t.one(
        "cas_alltime_uploaded_bytes_total",
        "counter",
        "Payload bytes sent over every run on this store.",
        n.uploaded_all_time as f64,
    );
    t.one(
        "cas_alltime_downloaded_bytes_total",
        "counter",
        "Payload bytes received over every run on this store.",
        n.downloaded_all_time as f64,
    );
    t.one(
        "cas_upload_speed_bytes",
        "gauge",
        "Upload rate, bytes a second.",
        n.upload_speed as f64,
    );
    t.one(
        "cas_download_speed_bytes",
        "gauge",
        "Download rate, bytes a second.",
        n.download_speed as f64,
    );
    t.one("cas_peers", "gauge", "Peers connected.", f64::from(n.peers));
    t.one(
        "cas_peers_connecting",
        "gauge",
        "Peers being connected to.",
        f64::from(n.peers_connecting),
    );
    t.one(
        "cas_uptime_seconds",
        "gauge",
        "Seconds since the engine started.",
        n.uptime_seconds as f64,
    );
    t.one(
        "cas_store_free_bytes",
        "gauge",
        "Bytes free on the store's file system.",
        n.store_free_bytes as f64,
    );
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for x in &torrents {
        *by_state.entry(x.state()).or_default() += 1;
    }
    t.family(
        "cas_torrents",
        "gauge",
        "Torrents listed, by qBittorrent state.",
    );
    for (state, count) in &by_state {
        t.sample("cas_torrents", &[("state", state)], *count as f64);
    }
    t.one(
        "cas_store_chunks",
        "gauge",
        "Chunks in the store.",
        s.chunks as f64,
    );
    t.one(
        "cas_store_physical_bytes",
        "gauge",
        "Bytes of the pack files on disk.",
        s.physical_bytes as f64,
    );
    t.one(
        "cas_store_content_bytes",
        "gauge",
        "Bytes of content stored, each chunk once.",
        s.content_bytes as f64,
    );
    t.one(
        "cas_store_logical_bytes",
        "gauge",
        "Bytes users see: trees' files and torrents from elsewhere.",
        s.logical_bytes as f64,
    );
    t.one(
        "cas_store_dedup_ratio",
        "gauge",
        "Logical bytes over content bytes.",
        s.dedup_ratio,
    );
    t.one(
        "cas_store_torrents",
        "gauge",
        "Torrents the catalog records.",
        s.torrents as f64,
    );
    let per: [(&str, &str, &str, &str); 7] = [
        (
            "cas_torrent_size_bytes",
            "gauge",
            "Bytes of the torrent's files.",
            "size",
        ),
        (
            "cas_torrent_progress",
            "gauge",
            "Share of the torrent held, 0 to 1.",
            "progress",
        ),
        (
            "cas_torrent_uploaded_bytes_total",
            "counter",
            "Payload bytes sent since start.",
            "uploaded",
        ),
        (
            "cas_torrent_downloaded_bytes_total",
            "counter",
            "Payload bytes received since start.",
            "downloaded",
        ),
        (
            "cas_torrent_upload_speed_bytes",
            "gauge",
            "Upload rate, bytes a second.",
            "upspeed",
        ),
        (
            "cas_torrent_download_speed_bytes",
            "gauge",
            "Download rate, bytes a second.",
            "dlspeed",
        ),
        (
            "cas_torrent_peers",
            "gauge",
            "Peers connected.",
            "num_leechs",
        ),
    ];
    let infos: Vec<_> = torrents.iter().map(|x| (x, x.info(api))).collect();
    for (name, kind, help, field) in per {
        t.family(name, kind, help);
        for (x, info) in &infos {
            let ih = x.ih.to_hex();
            let tname = x.name();
            let mut v = info[field].as_f64().unwrap_or(0.0);
            if field == "num_leechs" {
                v += info["num_seeds"].as_f64().unwrap_or(0.0);
            }
            t.sample(name, &[("hash", &ih), ("name", &tname)], v);
        }
    }
    Ok(Reply::Metrics(t.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
