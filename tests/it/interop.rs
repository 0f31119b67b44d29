//! Every .torrent cas writes loads in python libtorrent (2.0), which hash-checks the
//! exported data against it, and in transmission-show and aria2c.

use std::path::Path;

use crate::common::*;

/// transmission-show and `aria2c -S` parse the torrent and report its info-hash.
fn other_clients_parse(torrent: &Path, info_hash: &str) {
    for (tool, args) in [("transmission-show", vec![]), ("aria2c", vec!["-S"])] {
        let out = std::process::Command::new(tool)
            .args(args)
            .arg(torrent)
            .output()
            .unwrap_or_else(|e| panic!("run {tool} (bash tests/run.sh installs it): {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            out.status.success(),
            "{tool} refused {}: {text}",
            torrent.display()
        );
        assert!(
            text.contains(info_hash),
            "{tool} shows another info-hash: {text}"
        );
    }
}

fn check(torrent: &Path, save: &Path, pieces: u64) {
    let r = lt_check(torrent, save);
    assert!(
        r["error"].is_null(),
        "libtorrent refused {}: {r}",
        torrent.display()
    );
    assert_eq!(r["checked"], true, "{r}");
    assert_eq!(r["num_pieces"].as_u64(), Some(pieces), "{r}");
    assert_eq!(
        r["have"].as_u64(),
        Some(pieces),
        "libtorrent found bad pieces in {}: {r}",
        torrent.display()
    );
}

#[test]
fn libtorrent_loads_every_torrent_and_verifies_the_export() {
    let env = Env::with_piece_length("16K");
    let src = env.path("tree");
    sample_tree(&src, 16 << 10);
    let r = env.import(&src, "tree");
    let data = env.path("lt");
    env.ok(&["export", "tree", data.join("tree").to_str().unwrap()]);

    // The directory torrent (BEP 47 pad files) against the exported directory.
    let t = env.path("dir.torrent");
    env.ok(&["torrent", "tree", "-o", t.to_str().unwrap()]);
    let dir_pieces = lt_check(&t, &data)["num_pieces"].as_u64().unwrap();
    check(&t, &data, dir_pieces);
    assert!(dir_pieces >= 9);
    other_clients_parse(&t, r["directory_torrent"]["info_hash"].as_str().unwrap());

    // Each file's torrent against the file under its content-hash name.
    for f in r["files"].as_array().unwrap() {
        let Some(ih) = f["info_hash"].as_str() else {
            assert_eq!(f["size"], 0);
            continue;
        };
        let t = env.path(&format!("{ih}.torrent"));
        env.ok(&["torrent", ih, "-o", t.to_str().unwrap()]);
        let dir = env.path(&format!("files-{ih}"));
        let path = f["path"].as_str().unwrap();
        write(
            &dir.join(f["blake3"].as_str().unwrap()),
            &std::fs::read(src.join(path)).unwrap(),
        );
        check(&t, &dir, f["size"].as_u64().unwrap().div_ceil(16 << 10));
        other_clients_parse(&t, ih);
    }

    // The tree's manifest torrent against the manifest bytes.
    let t = env.path("manifest.torrent");
    env.ok(&["torrent", "tree", "--manifest", "-o", t.to_str().unwrap()]);
    let tree: cas::TreeId = r["tree"].as_str().unwrap().parse().unwrap();
    let store = cas::Store::open(&env.store(), None).unwrap();
    let rec = store.catalog().tree(&tree).unwrap().unwrap();
    let bytes = cas::read::content_bytes(
        &store,
        &store.catalog().torrent(&rec.manifest).unwrap().unwrap(),
    )
    .unwrap();
    drop(store);
    assert_eq!(blake3::hash(&bytes).to_hex().as_str(), tree.to_hex());
    let dir = env.path("manifest");
    write(&dir.join(tree.to_hex()), &bytes);
    check(&t, &dir, (bytes.len() as u64).div_ceil(16 << 10));
}

#[test]
fn file_of_exact_piece_multiple_has_no_extra_piece_hash() {
    let env = Env::with_piece_length("16K");
    write(&env.path("d/exact"), &random_bytes(61, 4 * (16 << 10)));
    let r = env.import(&env.path("d"), "d");
    let ih = r["files"][0]["info_hash"].as_str().unwrap();
    let t = env.path("exact.torrent");
    env.ok(&["torrent", ih, "-o", t.to_str().unwrap()]);
    let dir = env.path("data");
    write(
        &dir.join(r["files"][0]["blake3"].as_str().unwrap()),
        &std::fs::read(env.path("d/exact")).unwrap(),
    );
    check(&t, &dir, 4);
}
