//! Protocol encryption (MSE/PE) with real clients, both ways: rtorrent with its usual
//! `allow_incoming,try_outgoing`, qBittorrent (which dials cas) and Transmission (which
//! cas dials) requiring encryption download from `cas serve`; `cas get` fetches from a libtorrent seed that forces RC4; `cas serve
//! --encryption require` refuses a plaintext peer and `--encryption off` serves one;
//! two cas talk RC4 to each other.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::clients::Transmission;
use crate::common::*;
use crate::get::LtSeed;
use crate::qbittorrent::{content, Qbt};
use crate::rtorrent::Rtorrent;
use crate::serve::{lt_download_with, Serve};
use crate::tracker::{with_announce, Tracker};

/// libtorrent settings: an encrypted handshake and RC4, both ways, nothing else.
const LT_FORCED_RC4: &str = r#"{"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2}"#;

/// The name cas gives a file torrent: its content's BLAKE3.
fn blake3_name(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// rtorrent with `protocol.encryption.set = allow_incoming,try_outgoing` (which never
/// falls back to plaintext) downloads the big file's torrent from `cas serve` with
/// `--encryption POLICY`, through opentracker.
fn rtorrent_downloads_from_cas_serve_with(policy: &str, seed: u64) {
    let s = Served::new(seed);
    let env = &s.env;
    let file_ih = info_hash_hex(&s.file_torrent);
    let port = Tracker::port();
    let url = Tracker::url(port);
    let mut tracker = Tracker::start(env, port, &[&file_ih]);
    let _serve = Serve::start_with(env, &["--tracker", &url, "--encryption", policy]);
    tracker.wait_for(&file_ih, 1, 0, "cas serve");
    let torrent = with_announce(&s.file_torrent, &url);
    let downloads = env.path("rt-downloads");
    let mut rt = Rtorrent::start_with(
        env,
        "rt",
        &[("file.torrent", &torrent)],
        &downloads,
        "protocol.encryption.set = allow_incoming,try_outgoing",
    );
    rt.wait_done(&file_ih, Duration::from_secs(60));
    let want = s.read("big.bin");
    let got = std::fs::read(downloads.join(blake3_name(&want))).unwrap();
    assert_eq!(
        blake3_name(&got),
        blake3_name(&want),
        "--encryption {policy}"
    );
}

#[test]
fn rtorrent_with_allow_incoming_try_outgoing_downloads_from_cas_serve() {
    if !have_tools("encryption", &["rtorrent", "opentracker"]) {
        return;
    }
    // cas's default, then encrypted connections only: rtorrent got its bytes through
    // RC4 whichever side dialled.
    rtorrent_downloads_from_cas_serve_with("prefer", 81);
    rtorrent_downloads_from_cas_serve_with("require", 82);
}

#[test]
fn qbittorrent_requiring_encryption_downloads_from_cas_serve() {
    if !have_tools("encryption", &["qbittorrent-nox"]) {
        return;
    }
    let s = Served::new(83);
    let serve = Serve::start(&s.env);
    let mut qbt = Qbt::start(&s.env, "qbt");
    // "Require encryption" in qBittorrent's settings.
    let r = qbt.form(
        "/api/v2/app/setPreferences",
        &[("json", r#"{"encryption":1}"#)],
    );
    assert_eq!(r.0, 200, "{r:?}");
    let (status, prefs) = qbt.form("/api/v2/app/preferences", &[]);
    let prefs: serde_json::Value = serde_json::from_str(&prefs).unwrap();
    assert_eq!((status, &prefs["encryption"]), (200, &serde_json::json!(1)));
    let file_ih = info_hash_hex(&s.file_torrent);
    qbt.add_torrent(&s.file_torrent, &s.env.path("qbt-downloads"));
    qbt.add_peer(&file_ih, serve.port);
    let t = qbt.wait_complete(&file_ih, Duration::from_secs(60));
    assert_eq!(
        blake3_name(&content(&t, "")),
        blake3_name(&s.read("big.bin"))
    );
}

#[test]
fn cas_get_fetches_from_a_libtorrent_seed_that_forces_rc4() {
    let s = Served::new(84);
    let big = s.read("big.bin");
    let seed_dir = s.env.path("seed");
    write(&seed_dir.join(blake3_name(&big)), &big);
    let torrent = s.env.path("file.torrent");
    std::fs::write(&torrent, &s.file_torrent).unwrap();
    let seed = LtSeed::start_with(&s.env, &torrent, &seed_dir, 0, LT_FORCED_RC4);
    for policy in ["prefer", "require"] {
        let leech = Env::with_piece_length("16K");
        let out = leech.path("out");
        let how = ["--peer", &seed.peer(), "--encryption", policy];
        get_export(&leech, torrent.to_str().unwrap(), &how, &out);
        assert_eq!(
            b3(&only_file(&out)),
            blake3_name(&big),
            "--encryption {policy}"
        );
        leech.ok(&["fsck"]);
    }
}

#[test]
fn cas_get_prefers_encryption_but_falls_back_to_a_plaintext_seed() {
    let s = Served::new(87);
    let big = s.read("big.bin");
    let seed_dir = s.env.path("seed");
    write(&seed_dir.join(blake3_name(&big)), &big);
    let torrent = s.env.path("file.torrent");
    std::fs::write(&torrent, &s.file_torrent).unwrap();
    // libtorrent with encryption disabled drops an encrypted handshake.
    let seed = LtSeed::start(&s.env, &torrent, &seed_dir);
    let leech = Env::with_piece_length("16K");
    let out = leech.path("out");
    get_export(
        &leech,
        torrent.to_str().unwrap(),
        &["--peer", &seed.peer()],
        &out,
    );
    assert_eq!(b3(&only_file(&out)), blake3_name(&big));
    // Requiring encryption, cas gets nothing from it.
    let other = Env::with_piece_length("16K");
    let err = other.fails(&[
        "get",
        torrent.to_str().unwrap(),
        "--peer",
        &seed.peer(),
        "--encryption",
        "require",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "10",
    ]);
    assert!(err.contains("timed out with 0 of 700000 bytes"), "{err}");
}

/// Sends a plaintext BitTorrent handshake for `torrent` to `port`: whether one came
/// back.
fn plaintext_handshake_answered(port: u16, torrent: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    hs.extend_from_slice(&crate::liar::info_hash_of(torrent));
    hs.extend_from_slice(b"-PL0001-plaintextpee");
    s.write_all(&hs).unwrap();
    let mut got = [0u8; 48];
    match s.read_exact(&mut got) {
        Ok(()) => got[..20] == hs[..20] && got[28..48] == hs[28..48],
        Err(_) => false,
    }
}

fn lt_fetch(s: &Served, port: u16, settings: &str, seconds: u32, name: &str) -> serde_json::Value {
    let torrent = s.env.path("file.torrent");
    std::fs::write(&torrent, &s.file_torrent).unwrap();
    lt_download_with(&torrent, &s.env.path(name), port, seconds, settings)
}

#[test]
fn cas_serve_with_encryption_required_refuses_a_plaintext_peer() {
    let s = Served::new(85);
    let serve = Serve::start_with(&s.env, &["--encryption", "require"]);
    assert!(
        !plaintext_handshake_answered(serve.port, &s.file_torrent),
        "a plaintext handshake was answered"
    );
    // libtorrent in plaintext gets nothing; forcing RC4, everything.
    let r = lt_fetch(&s, serve.port, "{}", 10, "plain");
    assert_eq!(
        (r["seeding"].clone(), r["have"].clone()),
        (false.into(), 0.into()),
        "{r}"
    );
    let r = lt_fetch(&s, serve.port, LT_FORCED_RC4, 60, "rc4");
    assert_eq!(r["seeding"], true, "{r}");
    let got = std::fs::read(s.env.path("rc4").join(blake3_name(&s.read("big.bin")))).unwrap();
    assert_eq!(blake3_name(&got), blake3_name(&s.read("big.bin")));
}

#[test]
fn cas_serve_with_encryption_off_serves_a_plaintext_peer() {
    let s = Served::new(86);
    let serve = Serve::start_with(&s.env, &["--encryption", "off"]);
    assert!(plaintext_handshake_answered(serve.port, &s.file_torrent));
    let r = lt_fetch(&s, serve.port, "{}", 60, "plain");
    assert_eq!(r["seeding"], true, "{r}");
    let got = std::fs::read(s.env.path("plain").join(blake3_name(&s.read("big.bin")))).unwrap();
    assert_eq!(blake3_name(&got), blake3_name(&s.read("big.bin")));
}

#[test]
fn cas_gets_from_cas_serve_with_rc4_required_on_both_sides() {
    let s = Served::new(88);
    let serve = Serve::start_with(&s.env, &["--encryption", "require"]);
    let torrent = s.env.path("file.torrent");
    std::fs::write(&torrent, &s.file_torrent).unwrap();
    let leech = Env::with_piece_length("16K");
    let out = leech.path("out");
    let peer = format!("127.0.0.1:{}", serve.port);
    let how = ["--peer", &peer, "--encryption", "require"];
    get_export(&leech, torrent.to_str().unwrap(), &how, &out);
    assert_eq!(b3(&only_file(&out)), blake3_name(&s.read("big.bin")));
    leech.ok(&["fsck"]);
}

#[test]
fn transmission_requiring_encryption_downloads_from_cas_serve() {
    let tools = ["transmission-daemon", "transmission-remote", "opentracker"];
    if !have_tools("encryption", &tools) {
        return;
    }
    let s = Served::new(89);
    let env = &s.env;
    let ih = info_hash_hex(&s.file_torrent);
    let port = Tracker::port();
    let url = Tracker::url(port);
    let torrent = env.path("file.torrent");
    std::fs::write(&torrent, with_announce(&s.file_torrent, &url)).unwrap();
    // Transmission dials no loopback peer a tracker names: it announces first, and
    // cas, hearing of it, dials it.
    let mut tracker = Tracker::start(env, port, &[&ih]);
    let mut tm = Transmission::start_with(env, 2);
    tm.remote_ok(&["-a", torrent.to_str().unwrap()]);
    tracker.wait_for(&ih, 0, 1, "transmission");
    let _serve = Serve::start_with(env, &["--tracker", &url]);
    let want = s.read("big.bin");
    let got = env.path("transmission-downloads").join(blake3_name(&want));
    tm.wait_done(&ih, &got, &want);
    assert_eq!(b3(&got), blake3_name(&want));
}
