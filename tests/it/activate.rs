//! Torrents inactive until a peer asks: `cas serve` starts with each tree's manifest
//! torrent and the pinned ones in its session; a file or directory torrent is added
//! when a peer's handshake names it, and announced to its trackers meanwhile.

use std::path::Path;

use crate::common::*;
use crate::serve::{free_port, lt_download, Serve};
use crate::tracker::{with_tracker, Tracker};

/// The node's torrent counts, from `cas status --json`: (served, in the session).
fn counts(env: &Env) -> (u64, u64) {
    let s = env.json(&["status"]);
    let n = &s["node"];
    match (n["torrents"].as_u64(), n["active_torrents"].as_u64()) {
        (Some(all), Some(active)) => (all, active),
        _ => panic!("no torrent counts in cas status: {s}"),
    }
}

#[test]
fn a_file_torrent_inactive_at_start_is_served_to_a_peer_that_names_it() {
    let s = Served::new(91);
    let serve = Serve::start(&s.env);
    // Three file torrents, the manifest's and the directory's: the manifest's active.
    assert!(
        serve
            .line
            .starts_with("seeding 5 torrents (1 active, the others when a peer asks) on "),
        "{}",
        serve.line
    );
    assert_eq!(counts(&s.env), (5, 1));
    let got = s.env.path("lt");
    let r = lt_download(Path::new(&s.magnet), &got, serve.port);
    assert_eq!(r["seeding"], true, "{r}");
    assert_eq!(r["failed_bytes"], 0, "{r}");
    s.assert_magnet_file(&got, "the magnet of a torrent inactive until asked for");
    assert_eq!(
        counts(&s.env),
        (5, 2),
        "the torrent asked for is now active"
    );
}

#[test]
fn an_unknown_info_hash_is_refused_and_activates_nothing() {
    let s = Served::new(92);
    let serve = Serve::start(&s.env);
    let other = Env::with_piece_length("16K");
    let src = other.path("elsewhere");
    write(&src.join("not-here.bin"), &random_bytes(920, 50_000));
    other.import(&src, "elsewhere");
    let magnet = other.ok(&["magnet", "elsewhere:not-here.bin"]);
    let got = s.env.path("lt");
    let r = crate::serve::lt_download_within(Path::new(magnet.trim()), &got, serve.port, 5);
    assert_eq!(r["seeding"], false, "a torrent cas does not hold: {r}");
    assert_eq!(counts(&s.env), (5, 1));
}

#[test]
fn an_inactive_torrent_is_announced_and_found_through_its_tracker() {
    if !have_tools(
        "an_inactive_torrent_is_announced_and_found_through_its_tracker",
        &["opentracker"],
    ) {
        return;
    }
    let s = Served::new(93);
    let port = Tracker::port();
    let url = Tracker::url(port);
    let mut tracker = Tracker::start(&s.env, port, &[&s.magnet_ih()]);
    let _serve = Serve::start_with(&s.env, &["--tracker", &url]);
    tracker.wait_for(&s.magnet_ih(), 1, 0, "cas serve, for its inactive torrent");
    assert_eq!(counts(&s.env), (5, 1), "announcing does not activate");
    // No address of cas's: libtorrent is pointed at a closed port, and finds cas
    // through the tracker alone.
    let magnet = with_tracker(&s.magnet, &url);
    let got = s.env.path("lt");
    let r = lt_download(Path::new(&magnet), &got, free_port());
    assert_eq!(r["seeding"], true, "{r}");
    s.assert_magnet_file(&got, "found through the tracker");
    assert_eq!(counts(&s.env), (5, 2));
}

#[test]
fn an_encrypted_handshake_for_an_inactive_torrent_is_answered() {
    // RC4 forced: the handshake names the torrent only by HASH('req2', info-hash).
    let forced = r#"{"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2}"#;
    let s = Served::new(94);
    let serve = Serve::start(&s.env);
    let got = s.env.path("lt-rc4");
    let r = crate::serve::lt_download_with(Path::new(&s.magnet), &got, serve.port, 60, forced);
    assert_eq!(r["seeding"], true, "{r}");
    s.assert_magnet_file(&got, "an inactive torrent over an encrypted connection");
    assert_eq!(counts(&s.env), (5, 2));
}
