//! Discovery through a real tracker (opentracker on loopback), no peer hints; and the
//! tracker harness the client tests use too.

use std::fs::File;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{free_port, Serve};

/// opentracker on loopback, serving only whitelisted info-hashes.
pub struct Tracker {
    proc: Proc,
    port: u16,
}

impl Tracker {
    /// Picks the port first: the torrents must name the tracker before their
    /// info-hashes (the whitelist) are known.
    pub fn port() -> u16 {
        free_port()
    }

    pub fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/announce")
    }

    pub fn start(env: &Env, port: u16, info_hashes: &[&str]) -> Tracker {
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
    pub fn scrape(&self, info_hash: &str) -> Option<(u64, u64)> {
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

    /// Announces a peer listening on loopback `port` that still needs `left` bytes of
    /// `info_hash` (40 hex digits); true if the tracker answered.
    pub fn announce(&self, info_hash: &str, port: u16, left: u64) -> bool {
        let mut path = String::from("/announce?info_hash=");
        for i in (0..info_hash.len()).step_by(2) {
            path.push('%');
            path.push_str(&info_hash[i..i + 2]);
        }
        path.push_str(&format!(
            "&peer_id=-XX0001-{port:012}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1"
        ));
        http_get(self.port, &path).is_some()
    }

    /// Waits until the tracker counts at least `seeders` seeders and `leechers`
    /// leechers of `info_hash`: until `who` has announced.
    pub fn wait_for(&mut self, info_hash: &str, seeders: u64, leechers: u64, who: &str) {
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

    /// Waits until the tracker counts any peer of `info_hash` (a peer that announces
    /// while still checking its data counts as a leecher).
    pub fn wait_for_any(&mut self, info_hash: &str, who: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.proc.assert_running("opentracker");
            let s = self.scrape(info_hash);
            if matches!(s, Some((c, i)) if c + i >= 1) {
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

/// `magnet` naming the tracker at `url` too (`tr`, percent-encoded).
pub fn with_tracker(magnet: &str, url: &str) -> String {
    format!(
        "{magnet}&tr={}",
        url.replace(':', "%3A").replace('/', "%2F")
    )
}

/// `torrent` with an `announce` key: bencoded keys are sorted, and "announce" comes
/// before every key cas writes.
pub fn with_announce(torrent: &[u8], url: &str) -> Vec<u8> {
    assert!(torrent.starts_with(b"d") && !torrent.starts_with(b"d8:announce"));
    let mut t = format!("d8:announce{}:{url}", url.len()).into_bytes();
    t.extend_from_slice(&torrent[1..]);
    t
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
#[test]
fn a_tree_is_found_and_fetched_through_opentracker() {
    let a = Env::with_piece_length("16K");
    let src = a.path("docs");
    sample_tree(&src, 16 << 10);
    let imported = a.import(&src, "docs");
    let magnet = a.ok(&["magnet", "--manifest", "docs"]);
    let torrents: Vec<String> = std::fs::read_dir(a.store().join("torrents"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let port = Tracker::port();
    let url = Tracker::url(port);
    let names: Vec<&str> = torrents.iter().map(String::as_str).collect();
    let mut tracker = Tracker::start(&a, port, &names);
    let _serve = Serve::start_with(&a, &["--tracker", &url]);
    let manifest_ih = magnet.split("btih:").nth(1).unwrap()[..40].to_string();
    tracker.wait_for_any(&manifest_ih, "cas serve");
    let b = Env::with_piece_length("16K");
    let out = b.path("out");
    let r = b.json(&[
        "get",
        magnet.trim(),
        "--tracker",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "90",
        "--export",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["tree"], imported["tree"], "{r}");
    assert_eq!(snapshot(&out), snapshot(&src));
}

/// A leecher that `cas serve` dialled and then lost (here it closes the connection
/// after the handshakes; in life it restarts, or a NAT drops the mapping) is dialled
/// again: it may not be able to dial cas itself. The leecher is a raw socket that
/// announces itself to opentracker and counts the connections cas makes to it.
#[test]
fn a_seed_dials_again_a_leecher_whose_connection_dropped() {
    use std::net::TcpListener;
    let env = Env::with_piece_length("16K");
    write(&env.path("src/f.bin"), &random_bytes(93, 64 << 10));
    let r = env.import(&env.path("src"), "src");
    let ih = r["files"][0]["info_hash"].as_str().unwrap().to_string();
    let port = Tracker::port();
    let url = Tracker::url(port);
    let mut tracker = Tracker::start(&env, port, &[&ih]);
    let leecher = TcpListener::bind("127.0.0.1:0").unwrap();
    let leecher_port = leecher.local_addr().unwrap().port();
    assert!(
        tracker.announce(&ih, leecher_port, 1 << 16),
        "opentracker did not answer"
    );
    tracker.wait_for(&ih, 0, 1, "the raw leecher");
    let _serve = Serve::start_with(&env, &["--tracker", &url]);
    leecher.set_nonblocking(true).unwrap();
    let ih_bytes = hex::decode(&ih).unwrap();
    let mut connections = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while connections < 2 && Instant::now() < deadline {
        match leecher.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut theirs = [0u8; 68];
                s.read_exact(&mut theirs).unwrap();
                // A plaintext peer hangs up on an encrypted handshake (cas tries one
                // first, then dials again in plaintext): only plaintext ones count.
                if &theirs[..20] != b"\x13BitTorrent protocol" {
                    continue;
                }
                connections += 1;
                assert_eq!(
                    &theirs[28..48],
                    &ih_bytes[..],
                    "cas dialled for its torrent"
                );
                let mut ours = vec![19u8];
                ours.extend_from_slice(b"BitTorrent protocol");
                ours.extend_from_slice(&[0; 8]);
                ours.extend_from_slice(&ih_bytes);
                ours.extend_from_slice(b"-XX0001-rawleecher01");
                s.write_all(&ours).unwrap();
                // Interested, then gone.
                s.write_all(&[0, 0, 0, 1, 2]).unwrap();
                drop(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    assert_eq!(
        connections, 2,
        "cas serve dialled the leecher once and never again"
    );
}
