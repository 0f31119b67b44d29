//! A chunk damaged under a running `cas serve`: the piece is refused to peers from
//! then on, never sent as zeros.

use std::os::unix::fs::FileExt;

use crate::common::*;
use crate::serve::{lt_download_with, Serve};

#[test]
fn a_piece_found_damaged_while_serving_is_never_sent_as_zeros() {
    let env = Env::with_piece_length("16K");
    let data = random_bytes(81, 1 << 20);
    write(&env.path("src/file.bin"), &data);
    let imported = env.import(&env.path("src"), "src");
    let ih: cas::InfoHash = imported["files"][0]["info_hash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (pack, at) = {
        let store = cas::Store::open(&env.store(), None).unwrap();
        let record = store.catalog().torrent(&ih).unwrap().unwrap();
        let loc = store.chunks().location(&record.pieces[5]).unwrap().unwrap();
        let pack = env
            .store()
            .join("packs")
            .join(cas::chunks::pack::pack_file_name(loc.pack));
        (
            pack,
            loc.offset + cas::chunks::pack::RECORD_HEADER_LEN as u64 + 100,
        )
    };
    let t = env.path("file.torrent");
    env.ok(&["torrent", "src:file.bin", "-o", t.to_str().unwrap()]);
    let serve = Serve::start(&env);
    // A byte of piece 5 flips on disk while cas serves.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&pack)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    drop(f);
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
