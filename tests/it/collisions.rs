//! Real SHA-1 collisions (SHAttered, SHA-mbles) are never conflated.

use std::path::PathBuf;

use crate::common::*;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sha1-collisions")
        .join(name)
}

fn check_pair(piece_length: &str, a: &str, b: &str) {
    let env = Env::with_piece_length(piece_length);
    let (da, db) = (
        std::fs::read(testdata(a)).unwrap(),
        std::fs::read(testdata(b)).unwrap(),
    );
    assert_ne!(da, db);
    write(&env.path(&format!("src/{a}")), &da);
    write(&env.path(&format!("src/{b}")), &db);
    let r = env.import(&env.path("src"), "pair");
    let files = r["files"].as_array().unwrap();
    assert_ne!(
        files[0]["info_hash"], files[1]["info_hash"],
        "{a} and {b} must be two torrents"
    );
    for name in [a, b] {
        let out = env
            .cmd()
            .args(["cat", &format!("pair:{name}")])
            .output()
            .unwrap();
        assert!(
            out.stdout == std::fs::read(testdata(name)).unwrap(),
            "{name} reads back as itself ({piece_length})"
        );
    }
    env.ok(&["export", "pair", env.path("out").to_str().unwrap()]);
    for name in [a, b] {
        assert_eq!(b3(&env.path(&format!("out/{name}"))), b3(&testdata(name)));
    }
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));

    // The colliding pieces are flagged: never found by their SHA-1 alone.
    let store = cas::Store::open(&env.store(), None).unwrap();
    use cas::chunks::chunk::{Collision, Digests};
    let piece_a = &da[..da.len().min(piece_bytes(piece_length))];
    let piece_b = &db[..db.len().min(piece_bytes(piece_length))];
    let (first_a, first_b) = (Digests::of(piece_a), Digests::of(piece_b));
    assert_eq!(
        first_a.sha1, first_b.sha1,
        "the first pieces of {a} and {b} collide"
    );
    assert_ne!(first_a.id, first_b.id);
    assert_eq!(Collision::check(piece_a), Collision::Detected);
    assert_eq!(Collision::check(piece_b), Collision::Detected);
    assert!(store.contains(&first_a.id).unwrap() && store.contains(&first_b.id).unwrap());
    assert!(store.find_by_sha1(&first_a.sha1).unwrap().is_empty());
    assert_eq!(
        store.chunks().index().by_sha1(&first_a.sha1).unwrap().len(),
        2
    );
    let entry = store.chunks().index().get(&first_a.id).unwrap().unwrap();
    assert_eq!(
        entry.collision,
        Collision::Detected,
        "the check is kept in the index"
    );
    // An ordinary piece is found by its SHA-1.
    let plain = Digests::of(&da[da.len() - 100..]);
    drop(store);
    write(&env.path("plain/tail"), &da[da.len() - 100..]);
    env.import(&env.path("plain"), "plain");
    let store = cas::Store::open(&env.store(), None).unwrap();
    assert_eq!(store.find_by_sha1(&plain.sha1).unwrap(), vec![plain.id]);
}

fn piece_bytes(s: &str) -> usize {
    match s {
        "512K" => 512 << 10,
        "16K" => 16 << 10,
        _ => unreachable!(),
    }
}

#[test]
fn shattered_pdfs_with_512k_pieces() {
    check_pair("512K", "shattered-1.pdf", "shattered-2.pdf");
}

#[test]
fn shattered_pdfs_with_16k_pieces() {
    check_pair("16K", "shattered-1.pdf", "shattered-2.pdf");
}

#[test]
fn sha_mbles_chosen_prefix_pair() {
    check_pair("16K", "sha-mbles-1.bin", "sha-mbles-2.bin");
}

/// Each file of a colliding pair as its own torrent (1 MiB pieces: one piece each, the
/// two pieces with one SHA-1), seeded by libtorrent, fetched by `cas get`, then served
/// back to libtorrent: every copy is itself.
fn fetch_pair(a: &str, b: &str) {
    use crate::get::{mktorrent, LtSeed};
    if !have_tools("fetch_pair", &["mktorrent"]) {
        return;
    }
    let env = Env::new();
    let mut ihs = Vec::new();
    for name in [a, b] {
        let dir = env.path(&format!("seed-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(testdata(name), dir.join(name)).unwrap();
        let t = env.path(&format!("{name}.torrent"));
        mktorrent(20, &t, &dir.join(name));
        let seed = LtSeed::start(&env, &t, &dir);
        let r = env.json(&["get", t.to_str().unwrap(), "--peer", &seed.peer()]);
        // The second file's piece has the first one's SHA-1: it must come from the
        // wire, not from the store.
        assert_eq!(
            r["bytes_from_wire"].as_u64(),
            Some(std::fs::metadata(testdata(name)).unwrap().len()),
            "{name}: {r}"
        );
        ihs.push((r["torrents"][0].as_str().unwrap().to_string(), t));
    }
    for ((ih, _), name) in ihs.iter().zip([a, b]) {
        let out = env.path(&format!("out-{name}"));
        env.ok(&["export", ih, out.to_str().unwrap()]);
        assert_eq!(b3(&out.join(name)), b3(&testdata(name)), "{name} exported");
    }
    let serve = crate::serve::Serve::start(&env);
    for ((_, t), name) in ihs.iter().zip([a, b]) {
        let save = env.path(&format!("lt-{name}"));
        let r = crate::serve::lt_download(t, &save, serve.port);
        assert_eq!(r["seeding"], true, "{name}: {r}");
        assert_eq!(b3(&save.join(name)), b3(&testdata(name)), "{name} served");
    }
}

#[test]
fn shattered_pair_fetched_from_libtorrent_and_served_back_reads_as_itself() {
    fetch_pair("shattered-1.pdf", "shattered-2.pdf");
}

#[test]
fn sha_mbles_pair_fetched_from_libtorrent_and_served_back_reads_as_itself() {
    fetch_pair("sha-mbles-1.bin", "sha-mbles-2.bin");
}
