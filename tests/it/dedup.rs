//! Deduplication: a VM-disk-like image and a copy with 5% of its blocks changed.

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
