//! `/metrics` parsed by prometheus-client and checked against `cas stats`;
//! prometheus-qbittorrent-exporter scraping the API.

use std::process::Command;

use serde_json::{json, Value};

use super::replay;
use super::{config, have_python_clients, stats, Web, PASSWORD, USER};
use crate::common::*;

#[test]
fn metrics_parse_with_prometheus_client_and_agree_with_cas_stats() {
    if !have_python_clients() {
        return;
    }
    let served = Served::new(55);
    let env = &served.env;
    let web = Web::start(env, &config(env, &env.path("data")), &[]);
    let parse = r#"
import json, sys, urllib.request, base64
from prometheus_client.parser import text_string_to_metric_families
req = urllib.request.Request(sys.argv[1] + "/metrics")
req.add_header("Authorization", "Basic " + base64.b64encode(sys.argv[2].encode()).decode())
text = urllib.request.urlopen(req).read().decode()
out = {}
for f in text_string_to_metric_families(text):
    for s in f.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", parse, &web.url(), &format!("{USER}:{PASSWORD}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = stats(env);
    let one = |name: &str| m[name][0][1].as_f64().unwrap();
    assert_eq!(
        one("cas_store_physical_bytes"),
        s["physical_bytes"].as_f64().unwrap()
    );
    assert_eq!(one("cas_store_chunks"), s["chunks"].as_f64().unwrap());
    assert_eq!(
        one("cas_store_dedup_ratio"),
        s["dedup_ratio"].as_f64().unwrap()
    );
    let listed: f64 = m["cas_torrents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[1].as_f64().unwrap())
        .sum();
    assert_eq!(listed, s["torrents"].as_f64().unwrap());
    assert_eq!(
        m["cas_torrent_size_bytes"].as_array().unwrap().len() as f64,
        listed
    );
    // Without credentials, /metrics is refused like the API.
    let refused = replay::send(
        web.port,
        &format!("GET /metrics HTTP/1.1\nHost: 127.0.0.1:{}", web.port),
        b"",
    );
    assert_eq!(refused.status, 403);
}

#[test]
fn prometheus_qbittorrent_exporter_scrapes_cas_without_an_error() {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import qbittorrent_exporter.exporter"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok
        && lacks_capability(
            "prometheus-qbittorrent-exporter for /usr/bin/python3 (bash tests/run.sh installs it)",
        )
    {
        return;
    }
    let served = Served::new(77);
    let env = &served.env;
    let web = Web::start(env, &config(env, &env.path("data")), &[]);
    let scrape = r#"
import json, logging, sys
from qbittorrent_exporter import exporter
errors = []
class Errors(logging.Handler):
    def emit(self, r):
        if r.levelno >= logging.ERROR:
            errors.append(r.getMessage())
exporter.logger.addHandler(Errors())
cfg = exporter.get_config()
cfg.update(host="127.0.0.1", port=sys.argv[1], username=sys.argv[2], password=sys.argv[3],
           export_metrics_by_torrent=True, export_metrics_by_tag=True)
out = {}
for f in exporter.QbittorrentMetricsCollector(cfg).collect():
    for s in f.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps({"errors": errors, "metrics": out}))
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", scrape, &web.port.to_string(), USER, PASSWORD])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["errors"], json!([]), "{r}");
    let m = &r["metrics"];
    assert_eq!(m["qbittorrent_up"][0][0]["version"], "v4.6.7", "{m}");
    // The exporter gives booleans as they are (prometheus-client prints them as 1).
    let yes = |v: &Value| v == &json!(true) || v == &json!(1.0);
    assert!(yes(&m["qbittorrent_up"][0][1]), "{m}");
    assert!(yes(&m["qbittorrent_connected"][0][1]), "{m}");
    let torrents = stats(env)["torrents"].as_u64().unwrap() as usize;
    assert_eq!(
        m["qbittorrent_torrent_size"].as_array().unwrap().len(),
        torrents
    );
}
