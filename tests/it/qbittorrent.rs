//! qBittorrent (Debian's `qbittorrent-nox`, driven through its Web API, with its default
//! settings but DHT, LSD, PeX and UPnP off) and cas, both ways: qBittorrent downloads a
//! file torrent, a directory torrent and a magnet from `cas serve`, and `cas get`
//! fetches a .torrent and a magnet from qBittorrent as the only seeder. Each case runs
//! several times; every run must complete byte-identical.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{free_port, Serve};

/// How many times each case runs.
const RUNS: usize = 3;

/// A qbittorrent-nox with its own profile, killed on drop.
pub struct Qbt {
    proc: Proc,
    web: u16,
    /// Where it listens for peers.
    pub port: u16,
}

impl Qbt {
    pub fn start(env: &Env, name: &str) -> Qbt {
        let (web, port) = (free_port(), free_port());
        let profile = env.path(&format!("{name}-profile"));
        let conf = profile.join("qBittorrent/config/qBittorrent.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        let save = env.path(&format!("{name}-downloads"));
        std::fs::write(
            &conf,
            format!(
                "[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\Port={port}\n\
                 Session\\DHTEnabled=false\nSession\\LSDEnabled=false\nSession\\PeXEnabled=false\n\
                 Session\\DefaultSavePath={}\n\n[Preferences]\nWebUI\\Port={web}\n\
                 WebUI\\Address=127.0.0.1\nWebUI\\LocalHostAuth=false\nConnection\\UPnP=false\n",
                save.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("qbittorrent-nox");
        cmd.arg(format!("--profile={}", profile.display()));
        let mut proc = Proc::spawn(cmd, env.path(&format!("{name}.log")));
        wait_listening(web, &mut proc, "qbittorrent-nox's Web API");
        Qbt { proc, web, port }
    }

    /// One request to the Web API: its status and body.
    fn call(&mut self, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.proc.assert_running("qbittorrent-nox");
        let mut s = TcpStream::connect(("127.0.0.1", self.web)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.web,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        // qBittorrent keeps the connection open whatever the request says: the body is
        // as long as Content-Length.
        let mut resp = Vec::new();
        let mut buf = [0u8; 8192];
        let end = loop {
            if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "no HTTP head: {}", String::from_utf8_lossy(&resp));
            resp.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&resp[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = resp[end + 4..].to_vec();
        while body.len() < len {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the body ended early: {head}");
            body.extend_from_slice(&buf[..n]);
        }
        (status, body)
    }

    pub fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let (status, body) = self.call(
            path,
            "application/x-www-form-urlencoded",
            body.join("&").as_bytes(),
        );
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Adds a .torrent (multipart, as the Web UI sends it), saving under `save`.
    pub fn add_torrent(&mut self, torrent: &[u8], save: &Path) {
        let b = "----casqbtboundary";
        let mut body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"t.torrent\"\r\n\
             Content-Type: application/x-bittorrent\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(torrent);
        body.extend_from_slice(
            format!(
                "\r\n--{b}\r\nContent-Disposition: form-data; name=\"savepath\"\r\n\r\n{}\r\n--{b}--\r\n",
                save.display()
            )
            .as_bytes(),
        );
        let (status, got) = self.call(
            "/api/v2/torrents/add",
            &format!("multipart/form-data; boundary={b}"),
            &body,
        );
        assert_eq!(
            (status, String::from_utf8_lossy(&got).as_ref()),
            (200, "Ok.")
        );
    }

    fn add_magnet(&mut self, magnet: &str, save: &Path) {
        let save = save.display().to_string();
        let r = self.form(
            "/api/v2/torrents/add",
            &[("urls", magnet), ("savepath", &save)],
        );
        assert_eq!(r, (200, "Ok.".to_string()));
    }

    /// Tells qBittorrent of a peer for a torrent, once the torrent is in its list.
    pub fn add_peer(&mut self, info_hash: &str, port: u16) {
        let peer = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.form(
                "/api/v2/torrents/addPeers",
                &[("hashes", info_hash), ("peers", &peer)],
            );
            if status == 200 && body.contains("\"added\":1") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "qBittorrent did not take the peer: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn torrent(&mut self, info_hash: &str) -> serde_json::Value {
        let (status, body) = self.form("/api/v2/torrents/info", &[("hashes", info_hash)]);
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        list[0].clone()
    }

    /// Waits until qBittorrent has every piece of `info_hash`; its entry then.
    pub fn wait_complete(&mut self, info_hash: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let t = self.torrent(info_hash);
            if t["progress"].as_f64() == Some(1.0) && t["amount_left"] == 0 {
                return t;
            }
            if Instant::now() > deadline {
                panic!("qBittorrent did not complete {info_hash} in {within:?}: {t}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn remove(&mut self, info_hash: &str) {
        let r = self.form(
            "/api/v2/torrents/delete",
            &[("hashes", info_hash), ("deleteFiles", "true")],
        );
        assert_eq!(r.0, 200, "{r:?}");
    }
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The file a qBittorrent entry's `content_path` names, or under a directory's.
pub fn content(entry: &serde_json::Value, rel: &str) -> Vec<u8> {
    let path = PathBuf::from(entry["content_path"].as_str().unwrap());
    std::fs::read(if rel.is_empty() { path } else { path.join(rel) }).unwrap()
}

#[test]
fn qbittorrent_downloads_a_file_a_directory_and_a_magnet_from_cas_serve() {
    if !have_tools("qbittorrent", &["qbittorrent-nox"]) {
        return;
    }
    let s = Served::new(61);
    let serve = Serve::start(&s.env);
    let mut qbt = Qbt::start(&s.env, "qbt");
    let read = |p: &str| s.read(p);
    let magnet_ih = s.magnet_ih();
    let mut passed = [0usize; 3];
    let started = Instant::now();
    // One case at a time, each removed with its files before the next, so that each
    // download is a new one and a failure names its case.
    let file_ih = info_hash_hex(&s.file_torrent);
    let dir_ih = info_hash_hex(&s.dir_torrent);
    for run in 0..RUNS {
        let save = s.env.path(&format!("qbt-run{run}"));
        let within = Duration::from_secs(60);
        qbt.add_torrent(&s.file_torrent, &save);
        qbt.add_peer(&file_ih, serve.port);
        let t = qbt.wait_complete(&file_ih, within);
        assert_eq!(content(&t, ""), read("big.bin"), "run {run}: file torrent");
        qbt.remove(&file_ih);
        passed[0] += 1;
        qbt.add_torrent(&s.dir_torrent, &save);
        qbt.add_peer(&dir_ih, serve.port);
        let t = qbt.wait_complete(&dir_ih, within);
        for f in SERVED_FILES {
            assert_eq!(content(&t, f), read(f), "run {run}: directory torrent, {f}");
        }
        qbt.remove(&dir_ih);
        passed[1] += 1;
        qbt.add_magnet(&s.magnet, &save);
        qbt.add_peer(&magnet_ih, serve.port);
        let t = qbt.wait_complete(&magnet_ih, within);
        assert_eq!(content(&t, ""), read("sub/exact.bin"), "run {run}: magnet");
        qbt.remove(&magnet_ih);
        passed[2] += 1;
        eprintln!("run {run} done at {:?}", started.elapsed());
    }
    eprintln!(
        "qBittorrent from cas serve: file {}/{RUNS}, directory {}/{RUNS}, magnet {}/{RUNS} ({:?})",
        passed[0],
        passed[1],
        passed[2],
        started.elapsed()
    );
}

#[test]
fn cas_get_fetches_a_torrent_and_a_magnet_from_qbittorrent_as_the_only_seeder() {
    if !have_tools("qbittorrent", &["qbittorrent-nox"]) {
        return;
    }
    let s = Served::new(61);
    // qBittorrent seeds what it downloads from cas once; cas serve is then gone.
    let mut qbt = Qbt::start(&s.env, "qbt-seed");
    let save = s.env.path("qbt-seed-data");
    {
        let serve = Serve::start(&s.env);
        qbt.add_torrent(&s.dir_torrent, &save);
        qbt.add_peer(&info_hash_hex(&s.dir_torrent), serve.port);
        qbt.wait_complete(&info_hash_hex(&s.dir_torrent), Duration::from_secs(60));
        qbt.add_magnet(&s.magnet, &save);
        qbt.add_peer(&s.magnet_ih(), serve.port);
        qbt.wait_complete(&s.magnet_ih(), Duration::from_secs(60));
    }
    let dir_torrent = s.env.path("dir.torrent");
    let peer = format!("127.0.0.1:{}", qbt.port);
    let mut passed = [0usize; 2];
    for run in 0..RUNS {
        let leech = Env::with_piece_length("16K");
        let out = leech.path("out");
        get_export(
            &leech,
            dir_torrent.to_str().unwrap(),
            &["--peer", &peer],
            &out,
        );
        s.assert_tree(&out.join("src"), &format!("run {run}: directory torrent"));
        passed[0] += 1;
        let out = leech.path("out-magnet");
        get_export(&leech, &s.magnet, &["--peer", &peer], &out);
        s.assert_magnet_file(&out, &format!("run {run}: magnet"));
        passed[1] += 1;
        leech.ok(&["fsck"]);
    }
    eprintln!(
        "cas get from qBittorrent: torrent {}/{RUNS}, magnet {}/{RUNS}",
        passed[0], passed[1]
    );
}
