//! Real BitTorrent clients (Transmission 3, aria2) download what `cas serve` seeds.
//!
//! Neither client can be told "connect to this peer", so they meet `cas serve` the
//! way they would in the wild: through a tracker. An opentracker on loopback (only the
//! test's info-hashes whitelisted) is put into the torrents with `cas import --tracker`,
//! and the test reads the tracker's scrape to order the announces: aria2 announces
//! after cas and connects to it; Transmission, which ignores loopback peers from a
//! tracker, announces before cas, and cas connects to it. DHT, LSD, PEX and uTP are
//! off everywhere, all sockets are on 127.0.0.1, and every port comes from the OS.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{free_port, Serve};
use crate::tracker::{with_announce, with_tracker, Tracker};

/// How long a client may take to download everything.
const DEADLINE: Duration = Duration::from_secs(90);

pub struct Transmission {
    proc: Proc,
    rpc: String,
}

impl Transmission {
    pub fn start(env: &Env) -> Transmission {
        Transmission::start_with(env, 0)
    }

    /// With Transmission's `encryption` setting: 0 prefers plaintext, 1 prefers
    /// encryption, 2 requires it.
    pub fn start_with(env: &Env, encryption: u8) -> Transmission {
        let config = env.path("transmission");
        let downloads = env.path("transmission-downloads");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::create_dir_all(&downloads).unwrap();
        let rpc_port = free_port();
        let settings = serde_json::json!({
            "dht-enabled": false,
            "lpd-enabled": false,
            "pex-enabled": false,
            "utp-enabled": false,
            "port-forwarding-enabled": false,
            "peer-port": free_port(),
            "peer-port-random-on-start": false,
            "bind-address-ipv4": "127.0.0.1",
            "bind-address-ipv6": "::1",
            "encryption": encryption,
            "rpc-enabled": true,
            "rpc-port": rpc_port,
            "rpc-bind-address": "127.0.0.1",
            "rpc-whitelist-enabled": true,
            "rpc-whitelist": "127.0.0.1",
            "rpc-host-whitelist-enabled": false,
            "rpc-authentication-required": false,
            "download-dir": downloads,
            "incomplete-dir-enabled": false,
            "watch-dir-enabled": false,
            "start-added-torrents": true,
            "blocklist-enabled": false,
            "speed-limit-down-enabled": false,
            "speed-limit-up-enabled": false,
            "alt-speed-enabled": false,
            "ratio-limit-enabled": false,
            "idle-seeding-limit-enabled": false,
            "queue-stalled-enabled": false,
            "download-queue-enabled": false,
            "seed-queue-enabled": false,
            "message-level": 2,
        });
        std::fs::write(
            config.join("settings.json"),
            serde_json::to_vec_pretty(&settings).unwrap(),
        )
        .unwrap();
        let mut cmd = Command::new("transmission-daemon");
        cmd.arg("--foreground").arg("--config-dir").arg(&config);
        let mut proc = Proc::spawn(cmd, env.path("transmission.log"));
        wait_listening(rpc_port, &mut proc, "transmission-daemon");
        Transmission {
            proc,
            rpc: format!("127.0.0.1:{rpc_port}"),
        }
    }

    fn remote(&self, args: &[&str]) -> Output {
        Command::new("transmission-remote")
            .arg(&self.rpc)
            .args(args)
            .output()
            .expect("run transmission-remote")
    }

    /// Runs transmission-remote and requires success; returns its standard output.
    pub fn remote_ok(&self, args: &[&str]) -> String {
        let out = self.remote(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && !stdout.contains("Error"),
            "transmission-remote {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Waits until Transmission has all of torrent `ih` and `got` holds `want`.
    pub fn wait_done(&mut self, ih: &str, got: &Path, want: &[u8]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.proc.assert_running("transmission-daemon");
            let info = String::from_utf8_lossy(&self.remote(&["-t", ih, "-i"]).stdout).into_owned();
            if info.contains("Percent Done: 100%")
                && std::fs::read(got).map(|b| b == want).unwrap_or(false)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "transmission did not download {} within {DEADLINE:?}:\n{}",
                    got.display(),
                    self.report(ih)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What transmission says about a torrent, its trackers and its peers.
    fn report(&self, id: &str) -> String {
        let mut r = String::new();
        for flag in ["-i", "-it", "-pi"] {
            let out = self.remote(&["-t", id, flag]);
            r.push_str(&String::from_utf8_lossy(&out.stdout));
            r.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        r.push_str("--- transmission-daemon log ---\n");
        r.push_str(&self.proc.log_text());
        r
    }
}

#[test]
fn transmission_downloads_a_file_cas_serves() {
    let tools = ["transmission-daemon", "transmission-remote", "opentracker"];
    if !have_tools("transmission_downloads_a_file_cas_serves", &tools) {
        return;
    }
    let env = Env::with_piece_length("256K");
    let src = env.path("data");
    // Not a whole number of pieces: the last one is short.
    let data = random_bytes(81, (3 << 20) + 12_345);
    write(&src.join("big.bin"), &data);
    write(&src.join("note.txt"), b"not this one\n");
    let port = Tracker::port();
    let url = Tracker::url(port);
    let r = env.json(&[
        "import",
        src.to_str().unwrap(),
        "--name",
        "data",
        "--tracker",
        &url,
    ]);
    let file = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "big.bin")
        .unwrap_or_else(|| panic!("big.bin not imported: {r}"));
    let ih = file["info_hash"].as_str().unwrap().to_string();
    let name = blake3::hash(&data).to_hex().to_string();
    assert_eq!(file["blake3"].as_str(), Some(name.as_str()), "{r}");
    let t = env.path("big.torrent");
    env.ok(&["torrent", "data:big.bin", "-o", t.to_str().unwrap()]);

    // Transmission 3 never connects to a 127.0.0.0/8 peer a tracker names ("martian"
    // addresses), but it takes incoming connections from one. So Transmission
    // announces first, and `cas serve`, announcing after it, hears of it and connects.
    let mut tracker = Tracker::start(&env, port, &[&ih]);
    let mut tm = Transmission::start(&env);
    tm.remote_ok(&["-a", t.to_str().unwrap()]);
    tracker.wait_for(&ih, 0, 1, "transmission");
    let _serve = Serve::start(&env);
    let got = env.path("transmission-downloads").join(&name);
    tm.wait_done(&ih, &got, &data);
    assert_eq!(b3(&got), name);
    let info = tm.remote_ok(&["-t", &ih, "-i"]);
    assert!(info.contains(&format!("Hash: {ih}")), "{info}");
}

/// Transmission fetches a directory torrent (its padded pieces among them) from
/// `cas serve`, through opentracker, as a user adds it.
#[test]
fn transmission_downloads_a_directory_cas_serves() {
    let tools = ["transmission-daemon", "transmission-remote", "opentracker"];
    if !have_tools("transmission_downloads_a_directory_cas_serves", &tools) {
        return;
    }
    let env = Env::with_piece_length("16K");
    let src = env.path("share");
    let data = random_bytes(82, 300_000);
    write(&src.join("big.bin"), &data);
    write(&src.join("sub/small.txt"), b"small\n");
    let port = Tracker::port();
    let url = Tracker::url(port);
    env.json(&[
        "import",
        src.to_str().unwrap(),
        "--name",
        "share",
        "--tracker",
        &url,
    ]);
    let t = env.path("share.torrent");
    env.ok(&["torrent", "share", "-o", t.to_str().unwrap()]);
    let dir_ih = env.ok(&["magnet", "share"]).split("btih:").nth(1).unwrap()[..40].to_string();
    let mut tracker = Tracker::start(&env, port, &[&dir_ih]);
    let mut tm = Transmission::start(&env);
    tm.remote_ok(&["-a", t.to_str().unwrap()]);
    tracker.wait_for(&dir_ih, 0, 1, "transmission");
    let _serve = Serve::start(&env);
    let downloads = env.path("transmission-downloads");
    tm.wait_done(&dir_ih, &downloads.join("share/sub/small.txt"), b"small\n");
    assert_eq!(
        std::fs::read(downloads.join("share/big.bin")).unwrap(),
        data
    );
}

/// aria2c downloads `torrent` into `out`, finding its peers through the torrent's
/// tracker, and exits once it has everything.
pub fn aria2_fetch(env: &Env, torrent: &Path, out: &Path) {
    let aria2 = aria2_start(env, torrent, out);
    aria2_wait(env, aria2);
}

/// Starts aria2c on `torrent` (see [`aria2_fetch`]).
pub fn aria2_start(env: &Env, torrent: &Path, out: &Path) -> Proc {
    let mut cmd = aria2c(out);
    cmd.args([
        "--seed-time=0",
        "--bt-stop-timeout=60",
        "--bt-save-metadata=false",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--log-level=info",
    ])
    .arg(format!("--log={}", env.path("aria2-detail.log").display()))
    .arg(torrent);
    Proc::spawn(cmd, env.path("aria2.log"))
}

/// aria2c on loopback only, into `dir`: no DHT, LSD, PEX or IPv6; a port from the OS.
fn aria2c(dir: &Path) -> Command {
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--no-conf",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--interface=127.0.0.1",
    ])
    .arg(format!("--listen-port={}", free_port()))
    .arg(format!("--dir={}", dir.display()));
    cmd
}

/// Waits until aria2c has finished, and requires that it succeeded.
pub fn aria2_wait(env: &Env, mut aria2: Proc) {
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = aria2.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            panic!(
                "aria2c did not finish within {DEADLINE:?}:\n{}\n--- aria2 log ---\n{}",
                aria2.log_text(),
                tail(&env.path("aria2-detail.log"))
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        status.success(),
        "aria2c failed ({status}):\n{}\n--- aria2 log ---\n{}",
        aria2.log_text(),
        tail(&env.path("aria2-detail.log"))
    );
}

/// Every regular file below `root` (symlinks, and `.pad` when `skip_pad`, left out),
/// by relative path, with its BLAKE3.
fn files(root: &Path, skip_pad: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                continue;
            }
            if m.is_dir() {
                if !(skip_pad && rel == ".pad") {
                    stack.push(p);
                }
                continue;
            }
            out.push((rel, b3(&p)));
        }
    }
    out.sort();
    out
}

#[test]
fn aria2_downloads_the_padded_directory_torrent() {
    if !have_tools(
        "aria2_downloads_the_padded_directory_torrent",
        &["aria2c", "opentracker"],
    ) {
        return;
    }
    let env = Env::with_piece_length("16K");
    let src = env.path("share");
    sample_tree(&src, 16 << 10);
    write(&src.join("big.bin"), &random_bytes(82, (5 << 20) + 777));
    let port = Tracker::port();
    let url = Tracker::url(port);
    let r = env.json(&[
        "import",
        src.to_str().unwrap(),
        "--name",
        "share",
        "--tracker",
        &url,
    ]);
    let ih = r["directory_torrent"]["info_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no directory torrent: {r}"))
        .to_string();
    let t = env.path("dir.torrent");
    env.ok(&["torrent", "share", "-o", t.to_str().unwrap()]);

    let mut tracker = Tracker::start(&env, port, &[&ih]);
    let _serve = Serve::start(&env);
    tracker.wait_for(&ih, 1, 0, "cas serve");

    let out = env.path("aria2");
    aria2_fetch(&env, &t, &out);
    let got = out.join("share");
    let want = files(&src, false);
    assert!(want.len() >= 7, "{want:?}");
    assert_eq!(files(&got, true), want);
    // aria2 knows no BEP 47: the padding is on disk, and only zeros.
    let pad = got.join(".pad");
    if pad.exists() {
        for e in std::fs::read_dir(&pad).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            assert!(bytes.iter().all(|&b| b == 0), "a pad file holds data");
        }
    }
}

/// aria2 fetches a magnet from `cas serve` (the metadata from cas, then the pieces),
/// finding cas through the tracker the magnet names, in each of three runs.
#[test]
fn aria2_downloads_a_magnet_cas_serves() {
    if !have_tools(
        "aria2_downloads_a_magnet_cas_serves",
        &["aria2c", "opentracker"],
    ) {
        return;
    }
    let s = Served::new(83);
    let port = Tracker::port();
    let url = Tracker::url(port);
    let mut tracker = Tracker::start(&s.env, port, &[&s.magnet_ih()]);
    let _serve = Serve::start_with(&s.env, &["--tracker", &url]);
    tracker.wait_for(&s.magnet_ih(), 1, 0, "cas serve");
    let magnet = with_tracker(&s.magnet, &url);
    for run in 0..3 {
        let out = s.env.path(&format!("aria2-magnet-{run}"));
        aria2_fetch(&s.env, Path::new(&magnet), &out);
        s.assert_magnet_file(&out, &format!("run {run}: aria2's magnet from cas serve"));
    }
}

/// `cas get` of a file torrent whose only seeder is aria2, found through the tracker
/// the torrent names.
#[test]
fn get_fetches_a_file_torrent_from_aria2_as_the_only_seeder() {
    if !have_tools(
        "get_fetches_a_file_torrent_from_aria2_as_the_only_seeder",
        &["aria2c", "opentracker"],
    ) {
        return;
    }
    let s = Served::new(84);
    let port = Tracker::port();
    let url = Tracker::url(port);
    let ih = info_hash_hex(&s.file_torrent);
    let mut tracker = Tracker::start(&s.env, port, &[&ih]);
    let t = s.env.path("announced.torrent");
    std::fs::write(&t, with_announce(&s.file_torrent, &url)).unwrap();
    // aria2 seeds a copy of the file (named, as the torrent names it, by its BLAKE3),
    // checking it first.
    let seed_dir = s.env.path("aria2-seed");
    let name = blake3::hash(&s.read("big.bin")).to_hex().to_string();
    write(&seed_dir.join(&name), &s.read("big.bin"));
    let mut cmd = aria2c(&seed_dir);
    cmd.args([
        "--seed-ratio=0.0",
        "--check-integrity=true",
        "--file-allocation=none",
        "--summary-interval=0",
    ])
    .arg(&t);
    let mut seed = Proc::spawn(cmd, s.env.path("aria2-seed.log"));
    tracker.wait_for(&ih, 1, 0, "the aria2 seed");
    seed.assert_running("aria2c seeding");
    let leech = Env::with_piece_length("16K");
    let out = leech.path("out");
    get_export(&leech, t.to_str().unwrap(), &["--tracker", &url], &out);
    assert_eq!(std::fs::read(only_file(&out)).unwrap(), s.read("big.bin"));
    leech.ok(&["fsck"]);
}
