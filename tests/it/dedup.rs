//! Deduplication: a VM-disk-like image and a copy with 5% of its blocks changed; a
//! directory torrent's padded pieces share their files' chunks; sparse files.

use crate::common::*;

#[test]
fn vm_image_and_five_percent_changed_copy_cost_about_one_image() {
    const MIB: usize = 1 << 20;
    const BLOCKS: usize = 64;
    let env = Env::with_piece_length("1M");
    // Sparse-ish: a quarter of the blocks are zeros, the rest random.
    let mut image = random_bytes(21, BLOCKS * MIB);
    for b in (0..BLOCKS).step_by(4) {
        image[b * MIB..(b + 1) * MIB].fill(0);
    }
    let mut copy = image.clone();
    let mut r = rng(22);
    let mut changed = std::collections::BTreeSet::new();
    while changed.len() < BLOCKS * 5 / 100 {
        changed.insert(random_range(&mut r, 0, BLOCKS as u64) as usize);
    }
    for &b in &changed {
        copy[b * MIB + 4096] ^= 0xff;
    }
    write(&env.path("v1/disk.img"), &image);
    write(&env.path("v2/disk.img"), &copy);
    env.import(&env.path("v1"), "v1");
    env.import(&env.path("v2"), "v2");
    let s = env.json(&["stats"]);
    let physical = s["physical_bytes"].as_u64().unwrap() as f64;
    let logical = s["logical_bytes"].as_u64().unwrap() as f64;
    assert_eq!(logical, 2.0 * (BLOCKS * MIB) as f64);
    // Zero blocks cost a record header each; the random blocks once, plus 5% of them.
    let random_blocks = (BLOCKS - BLOCKS / 4) as f64;
    let one_image = random_blocks * MIB as f64;
    let ratio = physical / one_image;
    assert!(
        (1.0..=1.10).contains(&ratio),
        "physical {physical} = {ratio:.3} x one image"
    );
    for (name, bytes) in [("v1", &image), ("v2", &copy)] {
        let out = env
            .cmd()
            .args(["cat", &format!("{name}:disk.img")])
            .output()
            .unwrap();
        assert!(out.stdout == *bytes, "{name} reads back");
    }
    // Export writes the zero blocks as holes: the copy stays sparse.
    env.ok(&["export", "v1", env.path("out").to_str().unwrap()]);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(env.path("out/disk.img")).unwrap();
    assert_eq!(m.len(), (BLOCKS * MIB) as u64);
    assert!(
        m.blocks() * 512 <= (BLOCKS * MIB - BLOCKS / 4 * MIB) as u64 + MIB as u64,
        "exported image uses {} bytes on disk",
        m.blocks() * 512
    );
}

/// The pack bytes `cas stats` accounts for, each figure as it states it.
fn accounted(s: &serde_json::Value) -> u64 {
    let get = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("stats has {k}"));
    assert_eq!(get("record_header_bytes"), 76 * get("chunks"));
    assert_eq!(get("pack_header_bytes"), 16 * get("packs"));
    assert_eq!(get("unindexed_bytes"), 0);
    get("content_bytes")
        + get("metadata_bytes")
        + get("record_header_bytes")
        + get("pack_header_bytes")
}

#[test]
fn ten_thousand_small_files_cost_their_bytes_once_plus_the_stated_overhead() {
    const FILES: u64 = 10_000;
    let env = Env::with_piece_length("16K");
    let root = env.path("many");
    let mut r = rng(31);
    let mut total = 0u64;
    for i in 0..FILES {
        let len = random_range(&mut r, 4096, 5121) as usize;
        let mut bytes = random_bytes(1000 + i, len);
        bytes[len - 1] |= 1; // no trailing zero, so every byte is stored
        write(&root.join(format!("d{:02}/f{i:05}", i % 100)), &bytes);
        total += len as u64;
    }
    env.import(&root, "many");
    let s = env.json(&["stats"]);
    let get = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(get("logical_bytes"), total);
    // Each file is one chunk, shared by its torrent and the directory torrent.
    assert_eq!(get("content_bytes"), total);
    let manifest_chunks = get("metadata_bytes").div_ceil(16 << 10);
    assert_eq!(get("chunks"), FILES + manifest_chunks);
    let physical = get("physical_bytes");
    assert_eq!(physical, accounted(&s));
    let overhead = 76 * get("chunks") + 16 * get("packs") + get("metadata_bytes");
    assert!(
        physical as f64 <= 1.01 * total as f64 + overhead as f64,
        "physical {physical} for {total} bytes of files"
    );
    assert!(s["dedup_ratio"].as_f64().unwrap() >= 0.99, "{s}");

    // The directory torrent's pieces are found by their SHA-1 without storing more:
    // adopting it with the same data adds no chunk and no byte.
    let t = env.path("many.torrent");
    env.ok(&["torrent", "many", "-o", t.to_str().unwrap()]);
    let a = env.json(&["add", t.to_str().unwrap(), "--data", root.to_str().unwrap()]);
    assert_eq!(a["new_bytes"].as_u64(), Some(0), "{a}");
    assert_eq!(a["pieces_known"].as_u64(), a["pieces"].as_u64(), "{a}");
    assert_eq!(
        env.json(&["stats"])["physical_bytes"].as_u64(),
        Some(physical)
    );
    env.ok(&["fsck"]);
    let out = env.path("out");
    env.ok(&["export", "many", out.to_str().unwrap()]);
    assert_eq!(snapshot(&out), snapshot(&root));
}

/// A directory torrent downloaded from a peer: the last piece of each file, its tail
/// then BEP 47 padding, is stored as the tail alone, the chunk the file's own torrent
/// has. Importing the same files afterwards stores no new content, and the downloaded
/// tree reads back whole.
#[test]
fn a_directory_torrent_fetched_from_a_peer_stores_each_file_tail_once() {
    let a = Env::with_piece_length("16K");
    let root = a.path("tree");
    let mut total = 0u64;
    for i in 0..40u64 {
        let len = 3_000 + 1_000 * i as usize;
        let mut bytes = random_bytes(500 + i, len);
        bytes[len - 1] |= 1;
        write(&root.join(format!("d{}/f{i:02}", i % 4)), &bytes);
        total += len as u64;
    }
    a.import(&root, "tree");
    let t = a.path("tree.torrent");
    a.ok(&["torrent", "tree", "-o", t.to_str().unwrap()]);
    let serve = crate::serve::Serve::start(&a);
    let b = Env::with_piece_length("16K");
    let out = b.path("out");
    let peer = format!("127.0.0.1:{}", serve.port);
    get_export(&b, t.to_str().unwrap(), &["--peer", &peer], &out);
    // A .torrent carries no modes or times: the bytes are what must match.
    let bytes_of = |root: &std::path::Path| -> Vec<(String, String)> {
        snapshot(root)
            .into_iter()
            .map(|(p, what)| (p, what.split(" mtime").next().unwrap_or("").to_string()))
            .collect()
    };
    assert_eq!(bytes_of(&out.join("tree")), bytes_of(&root));
    let fetched = b.json(&["stats"]);
    assert_eq!(fetched["content_bytes"].as_u64(), Some(total), "{fetched}");
    b.import(&root, "tree");
    let imported = b.json(&["stats"]);
    assert_eq!(
        imported["content_bytes"], fetched["content_bytes"],
        "importing the files stored their content again: {imported}"
    );
    b.ok(&["fsck"]);
}

#[test]
fn a_tree_of_large_files_costs_one_copy() {
    const MIB: usize = 1 << 20;
    let env = Env::with_piece_length("1M");
    let root = env.path("large");
    let mut total = 0u64;
    for i in 0..3u64 {
        let mut bytes = random_bytes(40 + i, 3 * MIB + 12_345 * (i as usize + 1));
        *bytes.last_mut().unwrap() |= 1;
        write(&root.join(format!("f{i}.bin")), &bytes);
        total += bytes.len() as u64;
    }
    env.import(&root, "large");
    let s = env.json(&["stats"]);
    let get = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(get("logical_bytes"), total);
    assert_eq!(get("content_bytes"), total, "one copy: {s}");
    assert_eq!(
        get("chunks"),
        3 * 4 + 1,
        "4 pieces a file and the manifest's"
    );
    assert_eq!(get("physical_bytes"), accounted(&s));
}

#[test]
fn a_sparse_file_is_imported_by_its_data_and_exported_sparse() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    const MIB: u64 = 1 << 20;
    let env = Env::with_piece_length("1M");
    let root = env.path("sparse");
    std::fs::create_dir_all(&root).unwrap();
    let path = root.join("disk.img");
    let size = 1024 * MIB + 123;
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let data = random_bytes(50, 8 * MIB as usize);
    f.seek(SeekFrom::Start(300 * MIB + 4096)).unwrap();
    f.write_all(&data).unwrap();
    f.seek(SeekFrom::Start(size - 123)).unwrap();
    f.write_all(&[7u8; 123]).unwrap();
    drop(f);
    if std::fs::metadata(&path).unwrap().blocks() * 512 > 64 * MIB {
        eprintln!("skipped: this file system does not keep holes");
        return;
    }
    let want = b3(&path);
    env.import(&root, "sparse");
    let s = env.json(&["stats"]);
    assert_eq!(s["logical_bytes"].as_u64(), Some(size));
    // The data, in the 9 pieces it touches, and the short last piece; holes cost nothing.
    let content = s["content_bytes"].as_u64().unwrap();
    assert!(content <= 9 * MIB + 123, "content {content}");
    assert!(content >= 8 * MIB + 123, "content {content}");
    let out = env.path("out");
    env.ok(&["export", "sparse", out.to_str().unwrap()]);
    let m = std::fs::metadata(out.join("disk.img")).unwrap();
    assert_eq!(m.len(), size);
    assert!(
        m.blocks() * 512 <= 16 * MIB,
        "exported file uses {} bytes on disk",
        m.blocks() * 512
    );
    assert_eq!(b3(&out.join("disk.img")), want);
    env.ok(&["fsck"]);
}
