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
