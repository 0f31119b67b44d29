//! fsck finds damage, repair drops it and names what was lost, rebuild recovers.

use std::io::Write;

use crate::common::*;

fn packs(env: &Env) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(env.store().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// `cas fsck --repair --json`: exit 1 (damage was found), the report on stdout.
fn repair(env: &Env) -> serde_json::Value {
    let out = env.run(&["fsck", "--repair", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("re-import the files listed as lost"),
        "{stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn imported(env: &Env) -> Vec<u8> {
    let bytes = random_bytes(31, 200_000);
    write(&env.path("src/data.bin"), &bytes);
    write(&env.path("src/other.txt"), b"other file\n");
    env.import(&env.path("src"), "docs");
    bytes
}

#[test]
fn flipped_bit_in_a_pack_is_found_and_repair_names_the_file() {
    let env = Env::with_piece_length("16K");
    let bytes = imported(&env);
    // Imported again once settled: the store's stat cache knows every file, which
    // must not keep the re-import below from restoring what the repair drops.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.import(&env.path("src"), "docs");
    assert!(env.store().join("imports/docs").is_file());
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    // Flip one bit in the middle of the first pack (inside data.bin's chunks).
    let pack = &packs(&env)[0];
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)
        .unwrap();
    let at = 100_000;
    let mut b = [0u8];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    drop(f);

    let out = env.run(&["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("damaged: chunk"), "{stdout}");
    assert!(stdout.contains("do not match its hash"), "{stdout}");
    assert!(stderr.contains("cas fsck --repair"), "{stderr}");
    // Reading the damaged file fails loudly; it never returns the bad bytes.
    let cat = env.run(&["cat", "docs:data.bin"]);
    assert!(!cat.status.success());
    assert!(String::from_utf8_lossy(&cat.stderr).contains("does not match its BLAKE3"));

    let rep = repair(&env);
    let lost: Vec<String> = serde_json::from_value(rep["lost_files"].clone()).unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].starts_with("docs:data.bin"), "{lost:?}");
    // The other file is intact and still reads.
    assert_eq!(env.ok(&["cat", "docs:other.txt"]), "other file\n");
    // Re-importing the source restores the store to clean.
    env.import(&env.path("src"), "docs");
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    let cat = env.cmd().args(["cat", "docs:data.bin"]).output().unwrap();
    assert!(cat.stdout == bytes);
}

#[test]
fn deleted_index_is_rebuilt_from_the_packs() {
    let env = Env::with_piece_length("16K");
    let bytes = imported(&env);
    std::fs::remove_dir_all(env.store().join("index")).unwrap();
    let out = env.run(&["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cas index rebuild"));
    let r = env.json(&["index", "rebuild"]);
    assert!(r["chunks"].as_u64().unwrap() >= 13, "{r}");
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    let cat = env.cmd().args(["cat", "docs:data.bin"]).output().unwrap();
    assert!(cat.stdout == bytes);
    // New imports after a rebuild go to a fresh pack and stay consistent.
    write(&env.path("more/x"), &random_bytes(32, 70_000));
    env.import(&env.path("more"), "more");
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
}

#[test]
fn missing_pack_truncated_pack_and_orphan_bytes() {
    let env = Env::with_piece_length("16K");
    imported(&env);
    write(&env.path("second/y"), &random_bytes(33, 40_000));
    // The second import appends to the same pack.
    env.import(&env.path("second"), "second");

    // Orphan bytes (a torn append) are harmless: fsck stays clean and says so.
    let pack = packs(&env).last().unwrap().clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&pack)
        .unwrap();
    f.write_all(b"CASCHUNK torn record").unwrap();
    drop(f);
    let out = env.run(&["fsck"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("orphaned"));
    // The next import does not append after the torn bytes.
    write(&env.path("third/z"), &random_bytes(34, 40_000));
    env.import(&env.path("third"), "third");
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    assert_eq!(packs(&env).len(), 2);

    // Truncating a pack loses the chunks past the cut: reported, with a hint.
    let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    let out = env.run(&["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("record is missing"));

    // A missing pack: every chunk in it is reported.
    std::fs::remove_file(&pack).unwrap();
    let r = repair(&env);
    assert!(!r["damaged"].as_array().unwrap().is_empty());
    assert!(!r["lost_files"].as_array().unwrap().is_empty());
    // What the surviving pack holds still reads.
    let z = env.cmd().args(["cat", "third:z"]).output().unwrap();
    assert!(z.stdout == random_bytes(34, 40_000));
}

/// Damage made to a store holding two trees, "keep" (imported first) and "victim"
/// (whose chunks are the last records of the pack).
type Damage = fn(&Env, &serde_json::Value);

fn last_pack(env: &Env) -> std::path::PathBuf {
    packs(env)
        .into_iter()
        .rfind(|p| !p.to_string_lossy().ends_with(".new"))
        .unwrap()
}

fn victim_chunk_offset(env: &Env, victim: &serde_json::Value) -> u64 {
    let store = cas::Store::open(&env.store(), None).unwrap();
    let ih: cas::InfoHash = victim["files"][0]["info_hash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record = store.catalog().torrent(&ih).unwrap().unwrap();
    store
        .chunks()
        .location(&record.pieces[0])
        .unwrap()
        .unwrap()
        .offset
}

const DAMAGES: &[(&str, Damage)] = &[
    ("a flipped bit", |env, victim| {
        let at = victim_chunk_offset(env, victim) + 200;
        let pack = last_pack(env);
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[at as usize] ^= 0x01;
        std::fs::write(&pack, bytes).unwrap();
    }),
    ("a truncated pack", |env, _| {
        let pack = last_pack(env);
        let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 100).unwrap();
    }),
    ("index entries without bytes", |env, victim| {
        let at = victim_chunk_offset(env, victim);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(last_pack(env))
            .unwrap();
        f.set_len(at).unwrap();
    }),
    ("a deleted index", |env, _| {
        std::fs::remove_dir_all(env.store().join("index")).unwrap();
    }),
    ("orphan bytes", |env, _| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(last_pack(env))
            .unwrap();
        f.write_all(&random_bytes(35, 5000)).unwrap();
    }),
    ("a dangling ref", |env, victim| {
        let tree = victim["tree"].as_str().unwrap();
        std::fs::remove_file(env.store().join("trees").join(tree)).unwrap();
    }),
    ("a tree whose manifest torrent is gone", |env, victim| {
        let ih = victim["tree_torrent"]["info_hash"].as_str().unwrap();
        std::fs::remove_file(env.store().join("torrents").join(ih)).unwrap();
    }),
];

#[test]
fn every_kind_of_damage_is_found_with_a_hint_and_fixing_it_keeps_every_good_chunk() {
    for (what, damage) in DAMAGES {
        let env = Env::with_piece_length("16K");
        let keep = random_bytes(36, 300_000);
        write(&env.path("keep/k.bin"), &keep);
        env.import(&env.path("keep"), "keep");
        write(&env.path("victim/v.bin"), &random_bytes(37, 100_000));
        let victim = env.import(&env.path("victim"), "victim");
        assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
        damage(&env, &victim);

        let out = env.run(&["fsck"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let harmless = *what == "orphan bytes";
        assert_eq!(
            out.status.code(),
            Some(if harmless { 0 } else { 1 }),
            "{what}:\n{stdout}"
        );
        assert!(stderr.contains("hint: "), "{what}: no hint:\n{stderr}");
        // The fix the hint names.
        if stderr.contains("cas index rebuild") {
            env.ok(&["index", "rebuild"]);
        } else if !harmless {
            let out = env.run(&["fsck", "--repair"]);
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains("re-import"), "{what}: {said}");
            // ... and re-import what it lists as lost.
            env.import(&env.path("victim"), "victim");
        }
        let out = env.run(&["fsck"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: not clean after the fix:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // What was not damaged is all still there.
        let k = env.cmd().args(["cat", "keep:k.bin"]).output().unwrap();
        assert!(
            k.status.success() && k.stdout == keep,
            "{what}: the intact tree was lost"
        );
        // And the damaged one is whole again (recovered, or re-imported).
        let v = env.cmd().args(["cat", "victim:v.bin"]).output().unwrap();
        assert!(
            v.stdout == random_bytes(37, 100_000),
            "{what}: the victim is not back"
        );
    }
}

/// Damage to the sled index itself, done to `STORE/index`.
type IndexDamage = fn(&std::path::Path);

const INDEX_DAMAGES: &[(&str, IndexDamage)] = &[
    ("a garbage db", |index| {
        std::fs::write(index.join("db"), random_bytes(51, 10_000)).unwrap();
    }),
    ("a truncated db", |index| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(index.join("db"))
            .unwrap();
        f.set_len(100).unwrap();
    }),
    ("a garbage conf", |index| {
        std::fs::write(index.join("conf"), random_bytes(52, 100)).unwrap();
    }),
    ("zeroed snapshots", |index| {
        let mut zeroed = 0;
        for e in std::fs::read_dir(index).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
            {
                let len = std::fs::metadata(&p).unwrap().len();
                std::fs::write(&p, vec![0u8; len as usize]).unwrap();
                zeroed += 1;
            }
        }
        assert!(zeroed > 0, "no snapshot file in {}", index.display());
    }),
];

#[test]
fn a_damaged_index_is_recreated_by_the_rebuild_every_command_names() {
    for (what, damage) in INDEX_DAMAGES {
        let env = Env::with_piece_length("16K");
        let bytes = imported(&env);
        damage(&env.store().join("index"));
        for args in [&["ls"][..], &["fsck"], &["cat", "docs:data.bin"]] {
            let err = env.fails(args);
            assert!(
                err.contains("`cas index rebuild` recreates it from the packs"),
                "{what}: cas {args:?}: {err}"
            );
        }
        let r = env.json(&["index", "rebuild"]);
        assert!(r["chunks"].as_u64().unwrap() >= 13, "{what}: {r}");
        // The damaged index was moved aside, not deleted.
        let aside = r["damaged_index_moved_to"].as_str().unwrap_or_default();
        assert!(
            aside.contains("index.damaged-") && std::path::Path::new(aside).is_dir(),
            "{what}: {r}"
        );
        let out = env.run(&["fsck"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cat = env.cmd().args(["cat", "docs:data.bin"]).output().unwrap();
        assert!(cat.status.success() && cat.stdout == bytes, "{what}");
        assert_eq!(env.ok(&["cat", "docs:other.txt"]), "other file\n", "{what}");
        // A second rebuild, of a sound index, moves nothing aside.
        let again = env.json(&["index", "rebuild"]);
        assert!(again["damaged_index_moved_to"].is_null(), "{what}: {again}");
    }
}

/// Two trees: "docs" (data.bin, other.txt) and "keep" (k.bin). Returns docs' import
/// report and k.bin's bytes.
fn two_trees(env: &Env) -> (serde_json::Value, Vec<u8>) {
    imported(env);
    let docs = env.import(&env.path("src"), "docs");
    let keep = random_bytes(53, 50_000);
    write(&env.path("keep/k.bin"), &keep);
    env.import(&env.path("keep"), "keep");
    (docs, keep)
}

/// Garbage written over one catalog record (`rel`, under the store): fsck names the
/// file and says what is wrong while its other checks still run; the repair moves the
/// record to `STORE/damaged/` and goes on; what the record did not concern is intact.
/// Returns the repair's report.
fn garbage_record_is_reported_and_set_aside(
    env: &Env,
    rel: &str,
    wrong: &str,
    keep: &[u8],
) -> serde_json::Value {
    let path = env.store().join(rel);
    assert!(path.is_file(), "{}", path.display());
    std::fs::write(&path, b"\x00garbage, not a record\xff").unwrap();

    let out = env.run(&["fsck"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{}: {wrong}", path.display())),
        "{stdout}\n{stderr}"
    );
    // The rest of the check ran: every chunk was re-hashed.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("checked ") && !l.starts_with("checked 0 ")),
        "{stdout}"
    );
    assert!(stderr.contains("cas fsck --repair"), "{stderr}");
    // gc does not guess what the record kept alive.
    let err = env.fails(&["gc"]);
    assert!(err.contains("cas fsck --repair"), "{err}");

    let rep = repair(env);
    let repaired = rep["repaired"].to_string();
    assert!(
        repaired.contains(&path.display().to_string()) && repaired.contains("damaged/"),
        "{rep}"
    );
    assert!(!path.exists());
    let kind = rel.split('/').next().unwrap();
    let aside: Vec<_> = std::fs::read_dir(env.store().join("damaged").join(kind))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(aside, vec![b"\x00garbage, not a record\xff".to_vec()]);
    let k = env.cmd().args(["cat", "keep:k.bin"]).output().unwrap();
    assert!(k.status.success() && k.stdout == keep);
    rep
}

#[test]
fn a_garbage_ref_is_reported_and_repair_sets_it_aside() {
    let env = Env::with_piece_length("16K");
    let (_, keep) = two_trees(&env);
    garbage_record_is_reported_and_set_aside(
        &env,
        "refs/docs",
        "ref does not hold a tree id",
        &keep,
    );
    let out = env.run(&["fsck"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.ok(&["gc"]);
    let err = env.fails(&["ls", "docs"]);
    assert!(err.contains("is not a ref"), "{err}");
}

#[test]
fn a_garbage_tree_record_is_reported_and_repair_sets_it_aside() {
    let env = Env::with_piece_length("16K");
    let (docs, keep) = two_trees(&env);
    let tree = docs["tree"].as_str().unwrap();
    let rep = garbage_record_is_reported_and_set_aside(
        &env,
        &format!("trees/{tree}"),
        "unknown record magic or version",
        &keep,
    );
    // The ref naming it names nothing now: dropped too.
    assert!(
        rep["repaired"]
            .to_string()
            .contains("removed dangling ref docs"),
        "{rep}"
    );
    let out = env.run(&["fsck"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Importing again restores it.
    env.import(&env.path("src"), "docs");
    assert_eq!(env.ok(&["cat", "docs:other.txt"]), "other file\n");
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
}

#[test]
fn a_garbage_torrent_record_is_reported_and_repair_sets_it_aside() {
    let env = Env::with_piece_length("16K");
    let (docs, keep) = two_trees(&env);
    let file = docs["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "data.bin")
        .unwrap_or_else(|| panic!("{docs}"));
    let ih = file["info_hash"].as_str().unwrap();
    let rep = garbage_record_is_reported_and_set_aside(
        &env,
        &format!("torrents/{ih}"),
        "unknown record magic or version",
        &keep,
    );
    let lost: Vec<String> = serde_json::from_value(rep["lost_files"].clone()).unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].starts_with("docs:data.bin"), "{lost:?}");
    assert_eq!(env.ok(&["cat", "docs:other.txt"]), "other file\n");
    // Re-importing what it names as lost makes the store whole again.
    let bytes = env.import(&env.path("src"), "docs");
    drop(bytes);
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    let cat = env.cmd().args(["cat", "docs:data.bin"]).output().unwrap();
    assert!(cat.stdout == random_bytes(31, 200_000));
}
