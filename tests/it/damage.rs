//! A chunk damaged under a running `cas serve`: the piece is refused to peers from
//! then on, never sent as zeros, and fetched again from a peer that has it.

use std::os::unix::fs::FileExt;

use crate::common::*;
use crate::get::LtSeed;
use crate::serve::{lt_download_with, Serve};
use crate::tracker::{with_announce, Tracker};

/// A store holding a 1 MiB file in 16 KiB pieces, its file torrent, and where in its
/// pack a byte of piece 5 lies.
fn served_file(env: &Env, seed: u64) -> (Vec<u8>, std::path::PathBuf, std::path::PathBuf, u64) {
    let data = random_bytes(seed, 1 << 20);
    write(&env.path("src/file.bin"), &data);
    let imported = env.import(&env.path("src"), "src");
    let ih: cas::InfoHash = imported["files"][0]["info_hash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let loc = {
        let store = cas::Store::open(&env.store(), None).unwrap();
        let record = store.catalog().torrent(&ih).unwrap().unwrap();
        store.chunks().location(&record.pieces[5]).unwrap().unwrap()
    };
    let pack = env
        .store()
        .join("packs")
        .join(cas::chunks::pack::pack_file_name(loc.pack));
    let t = env.path("file.torrent");
    env.ok(&["torrent", "src:file.bin", "-o", t.to_str().unwrap()]);
    let at = loc.offset + cas::chunks::pack::RECORD_HEADER_LEN as u64 + 100;
    (data, t, pack, at)
}

/// Flips one bit of the byte at `at` of `file`, as a failing disk would.
fn flip(file: &std::path::Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

/// The attack: a byte of a piece flips under `cas serve` while a libtorrent seed of
/// the same torrent is in the swarm (through opentracker). cas stops offering the
/// piece, downloads it again from the seed, and serves it again: a client that only
/// talks to cas completes, with no byte that fails its hash, and cas's store reads the
/// file back whole.
#[test]
fn a_piece_found_damaged_while_serving_is_fetched_again_from_a_peer_that_has_it() {
    let env = Env::with_piece_length("16K");
    let (data, t, pack, at) = served_file(&env, 82);
    let torrent = std::fs::read(&t).unwrap();
    let ih = info_hash_hex(&torrent);
    let port = Tracker::port();
    let url = Tracker::url(port);
    let mut tracker = Tracker::start(&env, port, &[&ih]);
    let announced = env.path("announced.torrent");
    std::fs::write(&announced, with_announce(&torrent, &url)).unwrap();
    // A file torrent is named by its content's BLAKE3.
    let name = blake3::hash(&data).to_hex().to_string();
    write(&env.path("seed").join(&name), &data);
    let _seed = LtSeed::start(&env, &announced, &env.path("seed"));
    tracker.wait_for(&ih, 1, 0, "the libtorrent seed");
    let serve = Serve::start_with(&env, &["--tracker", &url]);
    tracker.wait_for(&ih, 2, 0, "cas serve");
    flip(&pack, at);
    let r = lt_download_with(
        &t,
        &env.path("lt"),
        serve.port,
        60,
        r#"{"min_reconnect_time": 1}"#,
    );
    assert_eq!(
        r["failed_bytes"], 0,
        "cas sent bytes that fail the hash: {r}"
    );
    assert_eq!(
        r["seeding"], true,
        "the client got every piece from cas: {r}"
    );
    assert_eq!(std::fs::read(env.path("lt").join(&name)).unwrap(), data);
    drop(serve);
    let out = env.path("out");
    env.ok(&["export", "src", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("file.bin")).unwrap(),
        data,
        "the store holds piece 5 again"
    );
    env.ok(&["fsck"]);
}

#[test]
fn a_piece_found_damaged_while_serving_is_never_sent_as_zeros() {
    let env = Env::with_piece_length("16K");
    let (_, t, pack, at) = served_file(&env, 81);
    let serve = Serve::start(&env);
    // A byte of piece 5 flips on disk while cas serves.
    flip(&pack, at);
    // The client connects again every 2 s (libtorrent would wait a minute before it
    // dials a peer that dropped it) and asks for piece 5 each time.
    let r = lt_download_with(
        &t,
        &env.path("lt"),
        serve.port,
        20,
        r#"{"min_reconnect_time": 1}"#,
    );
    assert_eq!(
        r["failed_bytes"], 0,
        "cas sent bytes that fail the hash: {r}"
    );
    assert_eq!(r["seeding"], false, "no one else has piece 5: {r}");
    assert!(
        r["have"].as_u64().unwrap() >= 32,
        "the other pieces arrive: {r}"
    );
}
