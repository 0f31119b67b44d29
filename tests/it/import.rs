//! Import, listing, cat, export, torrents and magnets.

use crate::common::*;

#[test]
fn same_content_under_two_names_gives_one_info_hash() {
    let env = Env::with_piece_length("64K");
    let bytes = random_bytes(7, 300_000);
    write(&env.path("one/report.pdf"), &bytes);
    write(&env.path("two/deeper/other-name.bin"), &bytes);
    let a = env.import(&env.path("one"), "one");
    let b = env.import(&env.path("two"), "two");
    let fa = &a["files"][0];
    let fb = &b["files"][0];
    assert_eq!(fa["info_hash"], fb["info_hash"]);
    assert_eq!(fa["blake3"], blake3::hash(&bytes).to_hex().as_str());
    let second = b["new_bytes"].as_u64().unwrap();
    assert!(second < 1000, "second import stored {second} bytes");
    // A second store, elsewhere, gives the same info-hash for the same bytes.
    let other = Env::with_piece_length("64K");
    write(&other.path("x/y.dat"), &bytes);
    assert_eq!(
        other.import(&other.path("x"), "x")["files"][0]["info_hash"],
        fa["info_hash"]
    );
}

#[test]
fn export_is_byte_identical_with_modes_links_and_empty_dirs() {
    let env = Env::with_piece_length("16K");
    let src = env.path("src");
    sample_tree(&src, 16 << 10);
    let r = env.import(&src, "sample");
    assert_eq!(r["ref"], "sample");
    assert_eq!(r["files"].as_array().unwrap().len(), 6);
    env.ok(&["export", "sample", env.path("out").to_str().unwrap()]);
    assert_eq!(snapshot(&src), snapshot(&env.path("out")));
    // By tree id too.
    let tree = r["tree"].as_str().unwrap();
    env.ok(&["export", tree, env.path("out2").to_str().unwrap()]);
    assert_eq!(snapshot(&src), snapshot(&env.path("out2")));
    // Export refuses a non-empty destination.
    let err = env.fails(&["export", "sample", env.path("out").to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn ls_cat_stats_and_magnet() {
    let env = Env::with_piece_length("16K");
    let src = env.path("photos");
    sample_tree(&src, 16 << 10);
    let r = env.import(&src, "photos");
    let refs = env.json(&["ls"]);
    assert_eq!(refs[0]["name"], "photos");
    assert_eq!(refs[0]["tree"], r["tree"]);
    let files = env.json(&["ls", "photos"]);
    let small = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "sub/small.txt")
        .unwrap();
    assert_eq!(small["size"], 6);
    assert_eq!(small["mode"], "0600");
    assert_eq!(small["blake3"], blake3::hash(b"hello\n").to_hex().as_str());
    assert!(small["info_hash"].as_str().unwrap().len() == 40);
    let link = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "sub/link")
        .unwrap();
    assert_eq!(link["target"], "../a.bin");
    assert!(files
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "empty-dir" && f["type"] == "dir"));
    assert_eq!(env.ok(&["cat", "photos:sub/small.txt"]), "hello\n");
    let big = env.cmd().args(["cat", "photos:a.bin"]).output().unwrap();
    assert_eq!(big.stdout, std::fs::read(src.join("a.bin")).unwrap());
    let err = env.fails(&["cat", "photos:nope"]);
    assert!(err.contains("no \"nope\" in tree photos"), "{err}");
    let m = env.ok(&["magnet", "photos"]);
    let dir_ih = r["directory_torrent"]["info_hash"].as_str().unwrap();
    assert_eq!(m.trim(), format!("magnet:?xt=urn:btih:{dir_ih}&dn=photos"));
    let s = env.json(&["stats"]);
    assert_eq!(s["refs"], 1);
    assert_eq!(
        s["logical_bytes"].as_u64().unwrap(),
        r["logical_bytes"].as_u64().unwrap()
    );
    let err = env.fails(&["import", src.to_str().unwrap(), "--piece-length", "1M"]);
    assert!(err.contains("uses 16384-byte pieces, not 1048576"), "{err}");
    let err = Env::new().fails(&["ls"]);
    assert!(err.contains("no cas store at"), "{err}");
    let err = env.fails(&["ls", "nosuchref"]);
    assert!(err.contains("\"nosuchref\" is not a ref"), "{err}");
}

#[test]
fn trackers_and_private_flag_reach_the_torrent() {
    let env = Env::with_piece_length("16K");
    write(&env.path("d/f"), &random_bytes(9, 40_000));
    let public = env.import(&env.path("d"), "pub");
    let private = env.json(&[
        "import",
        env.path("d").to_str().unwrap(),
        "--name",
        "priv",
        "--private",
        "--tracker",
        "http://127.0.0.1:1/announce",
    ]);
    assert_ne!(
        public["files"][0]["info_hash"],
        private["files"][0]["info_hash"]
    );
    let t = env.path("priv.torrent");
    env.ok(&["torrent", "priv:f", "-o", t.to_str().unwrap()]);
    let bytes = std::fs::read(&t).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("7:privatei1e"), "{text}");
    assert!(
        text.contains("8:announce27:http://127.0.0.1:1/announce"),
        "{text}"
    );
    let m = env.ok(&["magnet", "priv"]);
    assert!(
        m.contains("&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce"),
        "{m}"
    );
}

#[test]
fn a_re_import_under_the_same_ref_gives_what_a_first_import_gives() {
    let env = Env::with_piece_length("16K");
    let src = env.path("tree");
    sample_tree(&src, 16 << 10);
    for n in 0..40u64 {
        write(&src.join(format!("many/{n}")), &random_bytes(n, 5000));
    }
    let first = env.import(&src, "t");
    // Settled files are kept in the store's stat cache for the next import.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.import(&src, "t");
    assert!(env.store().join("imports/t").is_file());
    let again = env.import(&src, "t");
    assert_eq!(again["tree"], first["tree"]);
    assert_eq!(again["directory_torrent"], first["directory_torrent"]);
    assert_eq!(again["files"].as_array().unwrap().len(), 46);
    let cat = |spec: &str| env.cmd().args(["cat", spec]).output().unwrap().stdout;
    assert_eq!(cat("t:many/3"), random_bytes(3, 5000));

    // A changed file is seen; the directory torrent is made again, the same one a
    // store that never saw the tree makes (zz/deep/er/last.bin, unread, is no longer
    // the last file and gains a pad file).
    write(&src.join("many/7"), b"changed");
    write(&src.join("zzz"), b"the last file now");
    let changed = env.import(&src, "t");
    assert_ne!(changed["tree"], first["tree"]);
    assert_eq!(env.ok(&["cat", "t:many/7"]), "changed");
    let fresh = Env::with_piece_length("16K");
    let full = fresh.import(&src, "t");
    assert_eq!(full["tree"], changed["tree"]);
    assert_eq!(full["directory_torrent"], changed["directory_torrent"]);

    // A damaged cache only means the files are read again.
    std::fs::write(env.store().join("imports/t"), b"CASSEEN\x01garbage").unwrap();
    write(&src.join("many/8"), b"also changed");
    let after = env.import(&src, "t");
    assert_eq!(env.ok(&["cat", "t:many/8"]), "also changed");
    assert_eq!(after["tree"], fresh.import(&src, "t")["tree"]);
    assert_eq!(cat("t:many/9"), random_bytes(9, 5000));
    assert_eq!(cat("t:zz/deep/er/last.bin"), random_bytes(3, 8 << 10));
}

#[test]
fn small_sparse_files_give_the_torrents_of_their_dense_copies() {
    use std::io::{Seek, SeekFrom, Write};
    let env = Env::with_piece_length("16K");
    let (sparse, dense) = (env.path("sparse"), env.path("dense"));
    std::fs::create_dir_all(&sparse).unwrap();
    // Three pieces, the middle one a hole; one piece, all hole.
    let mut f = std::fs::File::create(sparse.join("holey")).unwrap();
    f.write_all(&random_bytes(4, 16 << 10)).unwrap();
    f.seek(SeekFrom::Start(32 << 10)).unwrap();
    f.write_all(&random_bytes(5, 1000)).unwrap();
    drop(f);
    std::fs::File::create(sparse.join("hole"))
        .unwrap()
        .set_len(9000)
        .unwrap();
    for name in ["holey", "hole"] {
        write(
            &dense.join(name),
            &std::fs::read(sparse.join(name)).unwrap(),
        );
    }
    let a = env.import(&sparse, "sparse");
    let b = env.import(&dense, "dense");
    // Same content ids and info-hashes (the trees differ by their mtimes).
    assert_eq!(a["files"], b["files"]);
    let holey = env
        .cmd()
        .args(["cat", "sparse:holey"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(holey, std::fs::read(dense.join("holey")).unwrap());
    assert_eq!(env.ok(&["cat", "sparse:hole"]), "\0".repeat(9000));
    assert_eq!(a["files"][1]["blake3"], b3(&dense.join("holey")).as_str());
}
