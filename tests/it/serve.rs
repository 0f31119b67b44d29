//! `cas serve` seeds the store to real BitTorrent clients on loopback.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

/// A running `cas serve`, stopped on drop.
pub struct Serve {
    child: Child,
    pub port: u16,
    /// What it printed when ready ("seeding N torrents on ADDR ...").
    pub line: String,
}

impl Serve {
    pub fn start(env: &Env) -> Serve {
        Serve::start_with(env, &[])
    }

    pub fn start_with(env: &Env, args: &[&str]) -> Serve {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("cas serve did not say where it listens: {line:?}"));
        assert!(line.starts_with("seeding "), "{line}");
        Serve { child, port, line }
    }
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port for a test peer.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn lt_download(torrent: &Path, save: &Path, peer_port: u16) -> serde_json::Value {
    lt_download_within(torrent, save, peer_port, 90)
}

pub fn lt_download_within(
    torrent: &Path,
    save: &Path,
    peer_port: u16,
    seconds: u32,
) -> serde_json::Value {
    lt_download_with(torrent, save, peer_port, seconds, "{}")
}

/// [`lt_download_within`] with more libtorrent settings (a JSON object).
pub fn lt_download_with(
    torrent: &Path,
    save: &Path,
    peer_port: u16,
    seconds: u32,
    settings: &str,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/lt_download.py");
    let out = Command::new("/usr/bin/python3")
        .env("LT_SETTINGS", settings)
        .arg(script)
        .arg(torrent)
        .arg(save)
        .arg(free_port().to_string())
        .args(["127.0.0.1", &peer_port.to_string(), &seconds.to_string()])
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "lt_download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lt_download prints JSON")
}

#[test]
fn libtorrent_downloads_a_directory_torrent_from_cas_serve() {
    let env = Env::with_piece_length("16K");
    let src = env.path("share");
    sample_tree(&src, 16 << 10);
    write(&src.join("big.bin"), &random_bytes(71, 3 << 20));
    env.import(&src, "share");
    let t = env.path("share.torrent");
    env.ok(&["torrent", "share", "-o", t.to_str().unwrap()]);
    let serve = Serve::start(&env);
    let got = env.path("got");
    let r = lt_download(&t, &got, serve.port);
    assert_eq!(r["seeding"], true, "libtorrent did not complete: {r}");
    assert_eq!(r["have"], r["num_pieces"]);
    for f in [
        "a.bin",
        "big.bin",
        "sub/copy.bin",
        "sub/exact.bin",
        "sub/small.txt",
        "zz/deep/er/last.bin",
    ] {
        assert_eq!(b3(&got.join("share").join(f)), b3(&src.join(f)), "{f}");
    }
}

/// Bytes a process has read through read(2) and friends (`rchar` in /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

#[test]
fn restarted_serve_does_not_reread_the_store_and_still_serves() {
    let env = Env::new();
    let src = env.path("data");
    let data = random_bytes(72, 96 << 20);
    write(&src.join("big.bin"), &data);
    env.import(&src, "data");
    let t = env.path("big.torrent");
    env.ok(&["torrent", "data:big.bin", "-o", t.to_str().unwrap()]);
    drop(Serve::start(&env));
    let serve = Serve::start(&env);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let read = bytes_read(serve.child.id());
    assert!(
        read < 32 << 20,
        "cas serve read {read} bytes at restart over 96 MiB stored: it re-hashed the store"
    );
    let got = env.path("got");
    let r = lt_download(&t, &got, serve.port);
    assert_eq!(r["seeding"], true, "libtorrent did not complete: {r}");
    let name = blake3::hash(&data).to_hex().to_string();
    assert_eq!(std::fs::read(got.join(name)).unwrap(), data);
}

#[test]
fn commands_run_through_serve_and_an_import_is_seeded_at_once() {
    let env = Env::with_piece_length("16K");
    write(&env.path("first/a.txt"), b"first\n");
    env.import(&env.path("first"), "first");
    let serve = Serve::start(&env);
    // The store is held by `cas serve`; commands go through it.
    let data = random_bytes(73, (1 << 20) + 3);
    write(&env.path("later/new.bin"), &data);
    let r = env.import(&env.path("later"), "later");
    assert_eq!(r["files"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(env.ok(&["ls"]).contains("later"));
    assert_eq!(env.ok(&["cat", "first:a.txt"]), "first\n");
    let err = env.fails(&["gc"]);
    assert!(err.contains("stop `cas serve`"), "{err}");
    // Relative paths are the client's.
    let t = env.path("new.torrent");
    let out = env
        .cmd()
        .current_dir(env.path(""))
        .args(["torrent", "later:new.bin", "-o", "new.torrent"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The new file is seeded without a restart.
    let got = env.path("got");
    let r = lt_download(&t, &got, serve.port);
    assert_eq!(r["seeding"], true, "libtorrent did not complete: {r}");
    let name = blake3::hash(&data).to_hex().to_string();
    assert_eq!(std::fs::read(got.join(name)).unwrap(), data);
}

#[test]
fn allow_list_refuses_peers_outside_it() {
    let env = Env::with_piece_length("16K");
    let data = random_bytes(74, 200_000);
    write(&env.path("d/f.bin"), &data);
    env.import(&env.path("d"), "d");
    let t = env.path("f.torrent");
    env.ok(&["torrent", "d:f.bin", "-o", t.to_str().unwrap()]);
    {
        let serve = Serve::start_with(&env, &["--allow", "10.0.0.0/8"]);
        let r = lt_download_within(&t, &env.path("refused"), serve.port, 8);
        assert_eq!(r["have"], 0, "a peer outside --allow got pieces: {r}");
    }
    let serve = Serve::start_with(&env, &["--allow", "10.0.0.0/8", "--allow", "127.0.0.0/8"]);
    let r = lt_download(&t, &env.path("allowed"), serve.port);
    assert_eq!(r["seeding"], true, "a peer inside --allow got nothing: {r}");
}

/// uTP beside TCP: a libtorrent client that may use uTP only downloads from
/// `cas serve`, byte-identical.
#[test]
fn libtorrent_downloads_over_utp_only_from_cas_serve() {
    let env = Env::with_piece_length("16K");
    let data = random_bytes(72, 2 << 20);
    write(&env.path("src/f.bin"), &data);
    env.import(&env.path("src"), "src");
    let t = env.path("f.torrent");
    env.ok(&["torrent", "src:f.bin", "-o", t.to_str().unwrap()]);
    let serve = Serve::start(&env);
    let got = env.path("got");
    let r = lt_download_with(
        &t,
        &got,
        serve.port,
        60,
        r#"{"enable_outgoing_tcp": false, "enable_incoming_tcp": false,
            "enable_outgoing_utp": true, "enable_incoming_utp": true}"#,
    );
    assert_eq!(
        r["seeding"], true,
        "libtorrent did not complete over uTP: {r}"
    );
    assert_eq!(std::fs::read(only_file(&got)).unwrap(), data);
}

/// libtorrent, given only a magnet and cas's address, gets the metadata and then the
/// file from `cas serve`, byte-identical, in each of three runs.
#[test]
fn libtorrent_downloads_a_magnet_from_cas_serve() {
    let s = Served::new(73);
    let serve = Serve::start(&s.env);
    for run in 0..3 {
        let got = s.env.path(&format!("lt-magnet-{run}"));
        let r = lt_download(Path::new(&s.magnet), &got, serve.port);
        assert_eq!(r["seeding"], true, "run {run}: {r}");
        assert_eq!(r["failed_bytes"], 0, "run {run}: {r}");
        s.assert_magnet_file(&got, &format!("run {run}: the magnet from cas serve"));
    }
}
