//! A private torrent (BEP 27) talks to its own tracker only. `cas serve` runs with LSD,
//! DHT and an extra `--tracker` on, in a network namespace; a probe in another one
//! serves both trackers, is the DHT node cas joins through, and listens for LSD. A
//! public torrent in the same store shows the probe hears everything it should.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::lsd::Link;

const OWN: u16 = 7001;
const EXTRA: u16 = 7002;
const DHT: u16 = 7003;

/// (kind, port, info-hash) of everything the probe heard.
fn heard(log: &Path) -> Vec<(String, u64, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["port"].as_u64().unwrap_or(0),
                v["info_hash"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_private_torrent_announces_only_to_its_own_tracker() {
    if skip_without_root() {
        return;
    }
    let env = Env::with_piece_length("16K");
    write(&env.path("secret/s.bin"), &random_bytes(71, 100_000));
    write(&env.path("open/o.bin"), &random_bytes(72, 100_000));
    let own = format!("http://10.99.0.2:{OWN}/announce");
    let private = env.json(&[
        "import",
        env.path("secret").to_str().unwrap(),
        "--private",
        "--tracker",
        &own,
    ]);
    let public = env.import(&env.path("open"), "open");
    let ih_of = |r: &serde_json::Value| -> HashSet<String> {
        let mut s: HashSet<String> = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["info_hash"].as_str().map(str::to_string))
            .collect();
        s.insert(r["tree_torrent"]["info_hash"].as_str().unwrap().to_string());
        s
    };
    let (secret, open) = (ih_of(&private), ih_of(&public));

    let link = Link::new("private");
    let log = env.path("probe.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/probe.py");
    let mut probe = Command::new("ip")
        .args(["netns", "exec", &link.b, "/usr/bin/python3"])
        .arg(script)
        .arg(&log)
        .args([
            "10.99.0.2",
            &DHT.to_string(),
            &OWN.to_string(),
            &EXTRA.to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !heard(&log).iter().any(|(k, _, _)| k == "ready") {
        assert!(Instant::now() < deadline, "the probe did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let extra = format!("http://10.99.0.2:{EXTRA}/announce");
    let mut serve = Link::in_ns(&link.a, &env)
        .args([
            "serve",
            "--listen",
            "10.99.0.1:0",
            "--lsd",
            "--dht",
            "--tracker",
            &extra,
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until every public torrent was heard by LSD and the extra tracker, and every
    // private one by its own tracker; then a little longer for anything that leaks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = heard(&log);
        let got = |kind: &str, port: u64, ih: &String| {
            h.iter().any(|(k, p, i)| k == kind && *p == port && i == ih)
        };
        let done = open
            .iter()
            .all(|ih| got("lsd", 0, ih) && got("tracker", u64::from(EXTRA), ih))
            && secret.iter().all(|ih| got("tracker", u64::from(OWN), ih));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe did not hear everything: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = probe.kill();
    let _ = probe.wait();
    for (kind, port, ih) in heard(&log) {
        if secret.contains(&ih) {
            assert!(
                kind == "tracker" && port == u64::from(OWN),
                "private torrent {ih} was announced by {kind} (port {port})"
            );
        }
    }
}
