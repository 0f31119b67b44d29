//! Removing refs and collecting garbage.

use crate::common::*;

#[test]
fn rm_then_gc_frees_only_what_nothing_else_uses() {
    let env = Env::with_piece_length("64K");
    let shared = random_bytes(11, 1 << 20);
    write(&env.path("a/shared.bin"), &shared);
    write(&env.path("a/only-a.bin"), &random_bytes(12, 1 << 20));
    write(&env.path("b/shared.bin"), &shared);
    env.import(&env.path("a"), "a");
    env.import(&env.path("b"), "b");
    let before = env.json(&["stats"]);
    env.ok(&["rm", "a"]);
    let gc = env.json(&["gc"]);
    assert!(gc["chunks_removed"].as_u64().unwrap() >= 16, "{gc}");
    let after = env.json(&["stats"]);
    assert!(
        after["physical_bytes"].as_u64().unwrap()
            < before["physical_bytes"].as_u64().unwrap() - (1 << 20) + 4096
    );
    env.ok(&["export", "b", env.path("out").to_str().unwrap()]);
    assert_eq!(std::fs::read(env.path("out/shared.bin")).unwrap(), shared);
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    let err = env.fails(&["ls", "a"]);
    assert!(err.contains("is not a ref"), "{err}");
}

#[test]
fn gc_keeps_a_chunk_shared_between_a_removed_tree_and_a_live_one_across_packs() {
    let env = Env::with_piece_length("16K");
    // Many small imports so that chunks spread over the packs of several runs.
    let mut keep = Vec::new();
    for i in 0..6u64 {
        let bytes = random_bytes(100 + i, 50_000);
        write(&env.path(&format!("d{i}/f")), &bytes);
        write(
            &env.path(&format!("d{i}/common")),
            &random_bytes(99, 40_000),
        );
        env.import(&env.path(&format!("d{i}")), &format!("r{i}"));
        keep.push(bytes);
    }
    for i in (0..6).step_by(2) {
        env.ok(&["rm", &format!("r{i}")]);
    }
    env.ok(&["gc"]);
    for i in (1..6).step_by(2) {
        let out = env
            .cmd()
            .args(["cat", &format!("r{i}:f")])
            .output()
            .unwrap();
        assert_eq!(out.stdout, keep[i], "r{i}:f after gc");
        let out = env
            .cmd()
            .args(["cat", &format!("r{i}:common")])
            .output()
            .unwrap();
        assert_eq!(out.stdout, random_bytes(99, 40_000));
    }
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
    // A second gc finds nothing more to do.
    let again = env.json(&["gc"]);
    assert_eq!(again["chunks_removed"], 0);
    assert_eq!(again["bytes_before"], again["bytes_after"]);
}

/// A tmpfs of `size` mounted under the environment, unmounted on drop.
struct SmallDisk {
    mnt: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(env: &Env, size: &str) -> SmallDisk {
        let mnt = env.path("small");
        std::fs::create_dir_all(&mnt).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallDisk { mnt }
    }

    fn cas(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_cas"))
            .args(args)
            .env("CAS_STORE", self.mnt.join("store"))
            .env_remove("CAS_LOG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cas(args);
        assert!(
            out.status.success(),
            "cas {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a filler file until the file system is full, then gives back `room`
    /// bytes: sled writes to the index even to open it, so a disk with no byte free
    /// opens for nothing at all (see `a_disk_too_full_to_open_the_index_...`).
    fn fill(&self, room: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.mnt.join("filler")).unwrap();
        let block = vec![0x5au8; 4096];
        while f.write_all(&block).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(room)).unwrap();
        f.sync_all().unwrap();
    }

    fn packs(&self) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.mnt.join("store/packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// fsck is clean and `REF:f` reads back as `bytes`.
    fn intact(&self, name: &str, bytes: &[u8]) {
        let out = self.cas(&["fsck"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = self.cas(&["cat", &format!("{name}:f")]);
        assert!(out.status.success() && out.stdout == bytes, "{name}:f");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .status();
    }
}

/// What a full disk is left with here: less than one chunk of the tests' 64 KiB.
const ROOM: u64 = 256 << 10;

#[test]
fn gc_on_a_full_disk_frees_dead_packs_first_and_loses_nothing() {
    if !is_root() && lacks_capability("mounting a small tmpfs to fill needs root") {
        return;
    }
    let env = Env::new();
    let disk = SmallDisk::mount(&env, "16m");
    disk.ok(&["init", "--piece-length", "64K"]);
    write(&env.path("dead/f"), &random_bytes(61, 4 << 20));
    disk.ok(&["import", env.path("dead").to_str().unwrap()]);
    // A torn append (a crash) makes the next import start a pack of its own.
    let first = disk.packs()[0].clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .unwrap();
    std::io::Write::write_all(&mut f, b"CASCHUNK torn").unwrap();
    drop(f);
    let keep = random_bytes(62, 1 << 20);
    write(&env.path("keep/f"), &keep);
    disk.ok(&["import", env.path("keep").to_str().unwrap()]);
    write(&env.path("dead2/f"), &random_bytes(63, 2 << 20));
    disk.ok(&["import", env.path("dead2").to_str().unwrap()]);
    assert_eq!(disk.packs().len(), 2);
    disk.fill(ROOM);
    disk.ok(&["rm", "dead"]);
    disk.ok(&["rm", "dead2"]);

    let out = disk.cas(&["gc", "--json"]);
    assert!(
        out.status.success(),
        "gc on a full disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        gc["bytes_after"].as_u64().unwrap() < (1 << 20) + (1 << 18),
        "{gc}"
    );
    disk.intact("keep", &keep);
}

#[test]
fn gc_that_cannot_make_room_says_how_much_it_needs_and_loses_nothing() {
    if !is_root() && lacks_capability("mounting a small tmpfs to fill needs root") {
        return;
    }
    let env = Env::new();
    let disk = SmallDisk::mount(&env, "16m");
    disk.ok(&["init", "--piece-length", "64K"]);
    // One pack: the live tree, then the dead one.
    let keep = random_bytes(64, 2 << 20);
    write(&env.path("keep/f"), &keep);
    disk.ok(&["import", env.path("keep").to_str().unwrap()]);
    write(&env.path("dead/f"), &random_bytes(65, 2 << 20));
    disk.ok(&["import", env.path("dead").to_str().unwrap()]);
    assert_eq!(disk.packs().len(), 1);
    disk.fill(ROOM);
    disk.ok(&["rm", "dead"]);

    let out = disk.cas(&["gc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cas gc (compacting pack-00000001")
            && err.contains(" bytes free on ")
            && err.contains("free space there and run it again"),
        "{err}"
    );
    disk.intact("keep", &keep);

    // With room made, it completes.
    std::fs::remove_file(disk.mnt.join("filler")).unwrap();
    let gc: serde_json::Value = serde_json::from_str(&disk.ok(&["gc", "--json"])).unwrap();
    assert!(
        gc["bytes_after"].as_u64().unwrap() < (2 << 20) + (1 << 18),
        "{gc}"
    );
    disk.intact("keep", &keep);
}

#[test]
fn a_disk_too_full_to_open_the_index_says_to_free_space_not_to_rebuild() {
    if !is_root() && lacks_capability("mounting a small tmpfs to fill needs root") {
        return;
    }
    let env = Env::new();
    let disk = SmallDisk::mount(&env, "8m");
    disk.ok(&["init", "--piece-length", "64K"]);
    let keep = random_bytes(66, 1 << 20);
    write(&env.path("keep/f"), &keep);
    disk.ok(&["import", env.path("keep").to_str().unwrap()]);
    disk.fill(0);
    for args in [&["ls"][..], &["gc"]] {
        let out = disk.cas(args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No space left on device")
                && err.contains("free space on that file system")
                && !err.contains("index rebuild"),
            "cas {args:?}: {err}"
        );
    }
    std::fs::remove_file(disk.mnt.join("filler")).unwrap();
    disk.ok(&["gc"]);
    disk.intact("keep", &keep);
}
