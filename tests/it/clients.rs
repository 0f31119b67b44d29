//! Real BitTorrent clients (Transmission 3, aria2) download what `cas serve` seeds.
//!
//! Neither client can be told "connect to this peer", so they meet `cas serve` the
//! way they would in the wild: through a tracker. An opentracker on loopback (only the
//! test's info-hashes whitelisted) is put into the torrents with `cas import --tracker`,
//! and the test reads the tracker's scrape to order the announces: aria2 announces
//! after cas and connects to it; Transmission, which ignores loopback peers from a
//! tracker, announces before cas, and cas connects to it. DHT, LSD, PEX and uTP are
//! off everywhere, all sockets are on 127.0.0.1, and every port comes from the OS.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{free_port, Serve};

/// How long a client may take to download everything.
const DEADLINE: Duration = Duration::from_secs(90);

/// True when every tool is on PATH. When one is missing the test is skipped with a
/// message, unless it runs in CI (`CI` set), where a missing tool is a failure.
fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: {} not found (bash tests/run.sh installs the Debian packages)",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    false
}

fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// A child process, killed on drop; its output goes to a log file shown on failure.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let prog = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("run {prog}: {e}"));
        Proc { child, log }
    }

    /// Panics if the process has exited.
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{what} exited ({status}):\n{}", self.log_text());
        }
    }

    fn log_text(&self) -> String {
        tail(&self.log)
    }
}

/// The end of a log file: what matters on failure.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let cut = text.len().saturating_sub(8000);
    let cut = (cut..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[cut..].to_string()
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on a loopback port.
fn wait_listening(port: u16, p: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        p.assert_running(what);
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port}:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// opentracker on loopback, serving only whitelisted info-hashes.
struct Tracker {
    proc: Proc,
    port: u16,
}

impl Tracker {
    /// Picks the port first: the torrents must name the tracker before their
    /// info-hashes (the whitelist) are known.
    fn port() -> u16 {
        free_port()
    }

    fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/announce")
    }

    fn start(env: &Env, port: u16, info_hashes: &[&str]) -> Tracker {
        // An absolute path: opentracker does not find a relative one.
        let whitelist = env.path("tracker-whitelist");
        let mut f = File::create(&whitelist).unwrap();
        for ih in info_hashes {
            assert_eq!(ih.len(), 40, "{ih}");
            writeln!(f, "{ih}").unwrap();
        }
        drop(f);
        let mut cmd = Command::new("opentracker");
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string()])
            .arg("-w")
            .arg(&whitelist)
            .current_dir(env.path(""));
        let mut proc = Proc::spawn(cmd, env.path("opentracker.log"));
        wait_listening(port, &mut proc, "opentracker");
        Tracker { proc, port }
    }

    /// The tracker's scrape of one torrent: (seeders, leechers).
    fn scrape(&self, info_hash: &str) -> Option<(u64, u64)> {
        let mut path = String::from("/scrape?info_hash=");
        for i in (0..info_hash.len()).step_by(2) {
            path.push('%');
            path.push_str(&info_hash[i..i + 2]);
        }
        let body = http_get(self.port, &path)?;
        let count = |key: &str| -> Option<u64> {
            let key = format!("{}:{key}i", key.len());
            let at = find(&body, key.as_bytes())? + key.len();
            let digits: Vec<u8> = body[at..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            String::from_utf8(digits).ok()?.parse().ok()
        };
        Some((count("complete")?, count("incomplete")?))
    }

    /// Waits until the tracker counts at least `seeders` seeders and `leechers`
    /// leechers of `info_hash`: until `who` has announced.
    fn wait_for(&mut self, info_hash: &str, seeders: u64, leechers: u64, who: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.proc.assert_running("opentracker");
            let s = self.scrape(info_hash);
            if matches!(s, Some((c, i)) if c >= seeders && i >= leechers) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{who} did not announce {info_hash} to the tracker (scrape: {s:?})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A plain HTTP/1.0 GET on loopback; the body, if the answer is 200.
fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let head_end = find(&resp, b"\r\n\r\n")?;
    if !resp.starts_with(b"HTTP/1.0 200") && !resp.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    Some(resp[head_end + 4..].to_vec())
}

/// A transmission-daemon in the foreground with its own config dir; killed on drop.
struct Transmission {
    proc: Proc,
    rpc: String,
}

impl Transmission {
    fn start(env: &Env) -> Transmission {
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
            // librqbit speaks no MSE/PE: plaintext first.
            "encryption": 0,
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
    fn remote_ok(&self, args: &[&str]) -> String {
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
    let deadline = Instant::now() + DEADLINE;
    loop {
        tm.proc.assert_running("transmission-daemon");
        let info = String::from_utf8_lossy(&tm.remote(&["-t", &ih, "-i"]).stdout).into_owned();
        if info.contains("Percent Done: 100%")
            && std::fs::read(&got).map(|b| b == data).unwrap_or(false)
        {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "transmission did not download {name} within {DEADLINE:?}:\n{}",
                tm.report(&ih)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(b3(&got), name);
    let info = tm.remote_ok(&["-t", &ih, "-i"]);
    assert!(info.contains(&format!("Hash: {ih}")), "{info}");
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
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--no-conf",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--interface=127.0.0.1",
        "--seed-time=0",
        "--bt-stop-timeout=60",
        "--bt-save-metadata=false",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--log-level=info",
    ])
    .arg(format!("--listen-port={}", free_port()))
    .arg(format!("--log={}", env.path("aria2-detail.log").display()))
    .arg(format!("--dir={}", out.display()))
    .arg(&t);
    let mut aria2 = Proc::spawn(cmd, env.path("aria2.log"));
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
        "aria2c failed ({status}):\n{}",
        aria2.log_text()
    );

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
