//! `cas serve --http`: qBittorrent's Web API driven by python qbittorrent-api (the
//! library seedbox tools use) and by the request sequences of Sonarr, cross-seed and
//! autobrr replayed as raw HTTP; bad input refused with nothing stored changed;
//! `/metrics` parsed by prometheus-client.

mod oracle;
mod replay;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::get::mktorrent;
use crate::serve::Serve;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "a-long-password";

/// A `cas serve --http` on loopback ports the OS picks, stopped on drop.
pub struct Web {
    child: Child,
    pub port: u16,
}

impl Web {
    /// With the config file `config` and more flags.
    pub fn start(env: &Env, config: &Path, args: &[&str]) -> Web {
        let mut child = env
            .cmd()
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port = None;
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if let Some(addr) = line.trim().strip_prefix("web API on http://") {
                port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        let port = port.expect("cas serve says where its web API listens");
        // Its later lines are not read: keep the pipe from filling.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Web { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it as systemd would (SIGTERM) and waits.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Web {
    /// SIGTERM first, so that a mount goes with the process; SIGKILL after 10 s.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file: the login, and `data` as the directory adds may name.
pub fn config(env: &Env, data: &Path) -> PathBuf {
    let p = env.path("config.toml");
    write(
        &p,
        format!(
            "[http]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\nsave-paths = [\"{}\"]\n",
            data.display()
        )
        .as_bytes(),
    );
    p
}

/// Whether python qbittorrent-api and prometheus-client are there (else skipped,
/// or a failure under CI).
pub fn have_python_clients() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import qbittorrentapi, prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok || !lacks_capability(
        "python qbittorrent-api and prometheus-client for /usr/bin/python3 (bash tests/run.sh installs them)",
    )
}

/// Runs `calls` ([method, kwargs] of qbittorrentapi.Client) as `user`; each
/// result is `{"ok": ...}` or `{"error": class, "message": ...}`.
pub fn qbt(web: &Web, user: &str, password: &str, calls: Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/webapi/client.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args([&web.url(), user, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &calls).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), calls.as_array().unwrap().len());
    results
}

/// The results, each required to be a success.
pub fn all_ok(results: Vec<Value>, calls: &Value) -> Vec<Value> {
    results
        .into_iter()
        .zip(calls.as_array().unwrap())
        .map(|(r, c)| match r.get("ok") {
            Some(v) => v.clone(),
            None => panic!("{c}: {r}"),
        })
        .collect()
}

fn run_ok(web: &Web, calls: Value) -> Vec<Value> {
    all_ok(qbt(web, USER, PASSWORD, calls.clone()), &calls)
}

/// The info-hashes of a `torrents_info` answer, sorted.
fn hashes(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hash"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn stats(env: &Env) -> Value {
    env.json(&["stats"])
}

/// A directory of two files and two torrents of them that differ only in their
/// info-hash (mktorrent's source string): what cross-seed finds on two trackers.
fn show(env: &Env, dir: &str, seed: u64) -> (PathBuf, PathBuf, PathBuf) {
    let data = env.path(dir);
    write(&data.join("Show/e1.mkv"), &random_bytes(seed, 300_000));
    write(&data.join("Show/e2.mkv"), &random_bytes(seed + 1, 120_000));
    let (a, b) = (
        env.path(&format!("{dir}-a.torrent")),
        env.path(&format!("{dir}-b.torrent")),
    );
    mktorrent(15, &a, &data.join("Show"));
    let o = Command::new("mktorrent")
        .args(["-l", "15", "-s", "other-tracker", "-o"])
        .arg(&b)
        .arg(data.join("Show"))
        .output()
        .unwrap();
    assert!(o.status.success());
    (data, a, b)
}

#[test]
fn a_client_library_is_refused_before_login_and_with_a_wrong_password() {
    if !have_python_clients() {
        return;
    }
    let env = Env::with_piece_length("16K");
    let web = Web::start(&env, &config(&env, &env.path("data")), &[]);
    let before = replay::send(
        web.port,
        &format!(
            "GET /api/v2/app/version HTTP/1.1\nHost: 127.0.0.1:{}",
            web.port
        ),
        b"",
    );
    assert_eq!(before.status, 403, "{}", before.text());
    let r = qbt(&web, USER, "wrong", json!([["auth_log_in", {}]]));
    assert_eq!(r[0]["error"], "LoginFailed", "{r:?}");
    let r = run_ok(
        &web,
        json!([["app_version", {}], ["app_web_api_version", {}]]),
    );
    assert_eq!(r, vec![json!("v4.6.7"), json!("2.9.3")]);
    // Five failed logins in a row ban the address: even the right password gets 403.
    let login = |password: &str| {
        replay::send(
            web.port,
            &format!(
                "POST /api/v2/auth/login HTTP/1.1\nHost: 127.0.0.1:{}\n\
                 Content-Type: application/x-www-form-urlencoded",
                web.port
            ),
            format!("username={USER}&password={password}").as_bytes(),
        )
    };
    for _ in 0..5 {
        assert_eq!(login("guess").text(), "Fails.");
    }
    assert_eq!(login(PASSWORD).status, 403);
}

#[test]
fn http_on_a_public_address_needs_credentials_from_the_config_file() {
    let env = Env::with_piece_length("16K");
    let empty = env.path("empty.toml");
    write(&empty, b"");
    let err = env.fails(&[
        "--config",
        empty.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(err.contains("no username and password"), "{err}");
}

#[test]
fn torrents_added_by_file_and_magnet_are_fetched_listed_and_labelled_and_keep_their_labels() {
    if !have_python_clients() {
        return;
    }
    let seeder = Served::new(71);
    let serve = Serve::start(&seeder.env);
    let env = Env::with_piece_length("16K");
    let cfg = config(&env, &env.path("data"));
    let peer = format!("127.0.0.1:{}", serve.port);
    let web = Web::start(&env, &cfg, &["--peer", &peer]);
    let file = seeder.env.path("file.torrent");
    let (fih, mih) = (info_hash_hex(&seeder.file_torrent), seeder.magnet_ih());
    let up = json!(["stalledUP", "uploading"]);
    let calls = json!([
        ["torrents_create_category", {"name": "tv", "save_path": ""}],
        ["torrents_add", {"torrent_files": [file], "category": "tv", "tags": "a,b"}],
        ["torrents_add", {"urls": seeder.magnet}],
        ["wait", {"hash": fih, "states": up, "seconds": 60}],
        ["wait", {"hash": mih, "states": up, "seconds": 60}],
        ["torrents_info", {}],
        ["torrents_info", {"category": "tv"}],
        ["torrents_info", {"tag": "b"}],
        ["torrents_info", {"filter": "completed"}],
        ["torrents_info", {"filter": "downloading"}],
        ["torrents_categories", {}],
        ["torrents_tags", {}],
        ["torrents_pause", {"torrent_hashes": fih}],
        ["torrents_info", {"filter": "paused"}],
        ["torrents_resume", {"torrent_hashes": fih}],
        ["wait", {"hash": fih, "states": up, "seconds": 20}],
        ["torrents_set_share_limits", {"ratio_limit": 0, "seeding_time_limit": -1, "torrent_hashes": mih}],
        ["wait", {"hash": mih, "states": ["pausedUP"], "seconds": 20}],
        ["torrents_files", {"torrent_hash": fih}],
        ["torrents_properties", {"torrent_hash": fih}],
        ["sync_maindata", {"rid": 0}],
    ]);
    let r = run_ok(&web, calls.clone());
    let mut both = vec![fih.clone(), mih.clone()];
    both.sort();
    assert_eq!(hashes(&r[5]), both);
    assert_eq!(hashes(&r[6]), vec![fih.clone()]);
    assert_eq!(hashes(&r[7]), vec![fih.clone()]);
    assert_eq!(hashes(&r[8]), both);
    assert_eq!(hashes(&r[9]), Vec::<String>::new());
    assert!(r[10].get("tv").is_some(), "{}", r[10]);
    assert_eq!(r[11], json!(["a", "b"]));
    assert_eq!(hashes(&r[13]), vec![fih.clone()]);
    assert_eq!(r[13][0]["state"], "pausedUP");
    assert_eq!(r[18][0]["size"], 700_000);
    assert_eq!(r[19]["total_size"], 700_000);
    assert_eq!(r[20]["full_update"], true);
    // The bytes came over the wire, each once.
    assert_eq!(stats(&env)["content_bytes"], 700_000 + (64 << 10));
    // sync/maindata: the next answer, asked with the rid just given, holds only
    // what changed.
    let r = run_ok(
        &web,
        json!([["sync_delta", {"call": ["torrents_create_tags", {"tags": "new"}]}]]),
    );
    let (first, next) = (&r[0][0], &r[0][1]);
    assert!(next["rid"].as_i64() > first["rid"].as_i64(), "{next}");
    assert_eq!(next.get("full_update"), None, "{next}");
    assert_eq!(next["tags"], json!(["new"]), "{next}");
    assert_eq!(first["torrents"].as_object().unwrap().len(), 2);
    // Labels, pauses and share limits survive a restart.
    web.stop();
    let web = Web::start(&env, &cfg, &["--peer", &peer]);
    let r = run_ok(
        &web,
        json!([
            ["torrents_categories", {}],
            ["torrents_info", {"tag": "a"}],
            ["wait", {"hash": mih, "states": ["pausedUP"], "seconds": 20}],
        ]),
    );
    assert!(r[0].get("tv").is_some());
    assert_eq!(hashes(&r[1]), vec![fih]);
}

#[test]
fn a_cross_seed_add_of_data_on_disk_costs_no_disk_and_a_savepath_outside_is_refused() {
    if !have_python_clients() || !have_tools("webapi cross-seed", &["mktorrent"]) {
        return;
    }
    let env = Env::with_piece_length("16K");
    let (data, a, b) = show(&env, "data", 5);
    let web = Web::start(&env, &config(&env, &data), &[]);
    let (aih, bih) = (
        info_hash_hex(&std::fs::read(&a).unwrap()),
        info_hash_hex(&std::fs::read(&b).unwrap()),
    );
    assert_ne!(aih, bih);
    let add = |t: &Path| json!(["torrents_add", {"torrent_files": [t], "save_path": data, "is_skip_checking": true, "category": "cross-seed", "tags": "cross-seed"}]);
    let up = json!(["stalledUP", "uploading"]);
    run_ok(
        &web,
        json!([add(&a), ["wait", {"hash": aih, "states": up, "seconds": 30}]]),
    );
    let first = stats(&env);
    assert!(
        first["physical_bytes"].as_u64().unwrap() > 420_000,
        "{first}"
    );
    let r = run_ok(
        &web,
        json!([add(&b), ["wait", {"hash": bih, "states": up, "seconds": 30}], ["torrents_info", {"category": "cross-seed"}]]),
    );
    let mut both = vec![aih.clone(), bih.clone()];
    both.sort();
    assert_eq!(hashes(&r[2]), both);
    assert!(r[2]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["progress"] == 1.0));
    let second = stats(&env);
    assert_eq!(
        second["physical_bytes"], first["physical_bytes"],
        "{second}"
    );
    assert_eq!(second["content_bytes"], 420_000);
    // A save path the config does not allow: refused, nothing changed.
    let labels = std::fs::read(env.store().join("webapi.json")).unwrap();
    let outside = env.path("elsewhere");
    let (_, c, _) = show(&env, "elsewhere", 9);
    let r = qbt(
        &web,
        USER,
        PASSWORD,
        json!([["torrents_add", {"torrent_files": [c], "save_path": outside, "is_skip_checking": true}], ["torrents_info", {}]]),
    );
    assert_eq!(r[0]["error"], "InvalidRequest400Error", "{r:?}");
    assert_eq!(hashes(&r[1]["ok"]), both);
    assert_eq!(stats(&env)["physical_bytes"], first["physical_bytes"]);
    assert_eq!(
        std::fs::read(env.store().join("webapi.json")).unwrap(),
        labels
    );
}

#[test]
fn delete_without_files_keeps_the_data_and_with_files_lets_gc_free_it() {
    if !have_python_clients() || !have_tools("webapi delete", &["mktorrent"]) {
        return;
    }
    let env = Env::with_piece_length("16K");
    let (one, a, _) = show(&env, "one", 11);
    let (two, b, _) = show(&env, "two", 21);
    let cfg = config(&env, &env.path(""));
    let web = Web::start(&env, &cfg, &[]);
    let (aih, bih) = (
        info_hash_hex(&std::fs::read(&a).unwrap()),
        info_hash_hex(&std::fs::read(&b).unwrap()),
    );
    let up = json!(["stalledUP", "uploading"]);
    run_ok(
        &web,
        json!([
            ["torrents_add", {"torrent_files": [a], "save_path": one, "is_skip_checking": true}],
            ["torrents_add", {"torrent_files": [b], "save_path": two, "is_skip_checking": true}],
            ["wait", {"hash": aih, "states": up, "seconds": 30}],
            ["wait", {"hash": bih, "states": up, "seconds": 30}],
        ]),
    );
    assert_eq!(stats(&env)["content_bytes"], 2 * 420_000);
    let r = run_ok(
        &web,
        json!([
            ["torrents_delete", {"torrent_hashes": aih}],
            ["torrents_delete", {"torrent_hashes": bih, "delete_files": true}],
            ["torrents_info", {}],
        ]),
    );
    assert_eq!(r[2], json!([]));
    web.stop();
    env.ok(&["gc"]);
    // The torrent deleted with its files is gone; the other one's data stays.
    assert_eq!(stats(&env)["content_bytes"], 420_000);
    let web = Web::start(&env, &cfg, &[]);
    assert_eq!(run_ok(&web, json!([["torrents_info", {}]]))[0], json!([]));
}

#[test]
fn sonarr_cross_seed_and_autobrr_request_sequences_get_what_they_expect() {
    let served = Served::new(33);
    let env = &served.env;
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let web = Web::start(env, &config(env, &data), &[]);
    let magnet = env.ok(&["magnet", "src:big.bin"]).trim().to_string();
    let mut vars = HashMap::new();
    vars.insert("host", format!("127.0.0.1:{}", web.port));
    vars.insert("user", USER.to_string());
    vars.insert("password", PASSWORD.to_string());
    vars.insert("hash", info_hash_hex(&served.file_torrent));
    vars.insert("data", data.display().to_string());
    vars.insert("magnet_encoded", form_encode(&magnet));
    vars.insert("magnet", magnet);
    for fixture in ["sonarr.http", "cross-seed.http", "autobrr.http"] {
        replay::replay(web.port, fixture, vars.clone(), &served.file_torrent);
    }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The store's catalog and the web API's labels, to compare before and after:
/// each catalog and pack file (path, length, BLAKE3), the labels file, `cas stats`.
type Stored = (Vec<(String, u64, String)>, Option<Vec<u8>>, Value);

fn stored(env: &Env) -> Stored {
    let mut catalog = Vec::new();
    for d in ["torrents", "downloads", "pins", "refs", "trees", "packs"] {
        for e in std::fs::read_dir(env.store().join(d)).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let hash = blake3::hash(&bytes).to_hex().to_string();
            catalog.push((p.display().to_string(), bytes.len() as u64, hash));
        }
    }
    catalog.sort();
    let labels = std::fs::read(env.store().join("webapi.json")).ok();
    (catalog, labels, stats(env))
}

#[test]
fn bad_input_gets_qbittorrents_status_codes_and_changes_nothing() {
    let served = Served::new(44);
    let env = &served.env;
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let web = Web::start(env, &config(env, &data), &[]);
    let host = format!("Host: 127.0.0.1:{}", web.port);
    let login = replay::send(
        web.port,
        &format!("POST /api/v2/auth/login HTTP/1.1\n{host}\nContent-Type: application/x-www-form-urlencoded"),
        format!("username={USER}&password={PASSWORD}").as_bytes(),
    );
    assert_eq!(login.text(), "Ok.");
    let sid = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let before = stored(env);
    let post = |path: &str, kind: &str, body: &[u8]| {
        replay::send(
            web.port,
            &format!("POST /api/v2/{path} HTTP/1.1\n{host}\nCookie: {sid}\nContent-Type: {kind}"),
            body,
        )
        .status
    };
    let form = "application/x-www-form-urlencoded";
    let multipart = "multipart/form-data; boundary=XX";
    let part = |name: &str, file: Option<&str>, body: &[u8]| {
        let mut v = format!("--XX\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
        if let Some(f) = file {
            v.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        v.extend_from_slice(b"\r\n\r\n");
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n");
        v
    };
    let mut garbage = part("torrents", Some("bad.torrent"), b"d4:infod4:name3:abcee");
    garbage.extend_from_slice(b"--XX--\r\n");
    let mut truncated = part("torrents", Some("t.torrent"), &served.file_torrent);
    truncated.truncate(truncated.len() - 40);
    let mut outside = part("torrents", Some("t.torrent"), &served.file_torrent);
    outside.extend(part("savepath", None, b"/etc"));
    outside.extend(part("skip_checking", None, b"true"));
    outside.extend_from_slice(b"--XX--\r\n");
    assert_eq!(
        post("torrents/add", multipart, &truncated),
        400,
        "malformed multipart"
    );
    assert_eq!(
        post("torrents/add", multipart, &garbage),
        415,
        "a torrent that does not parse"
    );
    assert_eq!(
        post("torrents/add", multipart, &outside),
        400,
        "a savepath outside"
    );
    assert_eq!(
        post(
            "torrents/properties",
            form,
            b"hash=0123456789abcdef0123456789abcdef01234567"
        ),
        404
    );
    assert_eq!(post("torrents/files", form, b"hash=nothex"), 404);
    assert_eq!(
        post("torrents/delete", form, b"deleteFiles=true"),
        400,
        "no hashes"
    );
    assert_eq!(
        post("torrents/setCategory", form, b"hashes=all&category=none"),
        409
    );
    assert_eq!(post("torrents/nosuchcall", form, b""), 404);
    let get = replay::send(
        web.port,
        &format!("GET /api/v2/torrents/delete?hashes=all HTTP/1.1\n{host}\nCookie: {sid}"),
        b"",
    );
    assert_eq!(get.status, 405);
    let forged = replay::send(
        web.port,
        &format!("POST /api/v2/torrents/delete HTTP/1.1\n{host}\nCookie: {sid}\nOrigin: http://evil.example\nContent-Type: {form}"),
        b"hashes=all&deleteFiles=true",
    );
    assert_eq!(forged.status, 401, "a cross-site request");
    assert_eq!(stored(env), before);
}

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

#[test]
fn content_path_is_under_the_mount_and_reads_back_the_torrents_bytes() {
    if !have_python_clients() {
        return;
    }
    if !is_root() && lacks_capability("mounting needs root") {
        return;
    }
    if !Path::new("/dev/fuse").exists() && lacks_capability("mounting needs /dev/fuse") {
        return;
    }
    let served = Served::new(88);
    let env = &served.env;
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let web = Web::start(
        env,
        &config(env, &env.path("data")),
        &["--mount", mnt.to_str().unwrap()],
    );
    let fih = info_hash_hex(&served.file_torrent);
    let r = run_ok(
        &web,
        json!([["app_preferences", {}], ["torrents_info", {"torrent_hashes": fih}]]),
    );
    assert_eq!(r[0]["save_path"], mnt.to_str().unwrap());
    let t = &r[1][0];
    let (save, content) = (
        t["save_path"].as_str().unwrap(),
        t["content_path"].as_str().unwrap(),
    );
    assert_ne!(
        save, content,
        "Sonarr takes content_path == save_path for an error"
    );
    assert!(content.starts_with(save), "{content} under {save}");
    // What an *arr tool copies from is the torrent's bytes.
    assert_eq!(std::fs::read(content).unwrap(), served.read("big.bin"));
    web.stop();
}
