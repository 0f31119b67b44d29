//! Crash consistency: `cas import` killed with SIGKILL at random instants.
//! After every kill, fsck is clean and every import that reported success reads back.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn import_killed_at_random_instants_leaves_the_store_consistent() {
    const CYCLES: u64 = 50;
    let env = Env::with_piece_length("64K");
    let mut r = rng(51);
    let mut done: Vec<(String, Vec<u8>)> = Vec::new();
    let mut kills = 0;
    // The first import runs to the end and sets the scale of the kill instants: each
    // later one is killed at a uniform instant within 1.2 x that duration.
    let mut span = Duration::ZERO;
    for cycle in 0..CYCLES {
        // Half shared with earlier cycles (dedup hits), half new bytes.
        let dir = env.path(&format!("src{cycle}"));
        let new = random_bytes(1000 + cycle, 3 << 20);
        write(&dir.join("new.bin"), &new);
        write(&dir.join("shared.bin"), &random_bytes(999, 2 << 20));
        write(
            &dir.join(format!("sub/n{cycle}.txt")),
            format!("cycle {cycle}\n").as_bytes(),
        );
        let name = format!("r{cycle}");
        let mut child = env
            .cmd()
            .args(["import", dir.to_str().unwrap(), "--name", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = if cycle == 0 {
            Duration::from_secs(600)
        } else {
            Duration::from_micros(random_range(&mut r, 0, span.as_micros() as u64 * 6 / 5 + 1))
        };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        match status {
            Some(s) => {
                assert!(s.success(), "uninterrupted import {cycle} failed");
                if cycle == 0 {
                    span = start.elapsed();
                }
                done.push((name, new));
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
        let out = env.run(&["fsck"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "fsck after cycle {cycle}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for (name, bytes) in &done {
            let out = env
                .cmd()
                .args(["cat", &format!("{name}:new.bin")])
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stdout == *bytes,
                "{name} after cycle {cycle}"
            );
        }
    }
    eprintln!(
        "{kills} of {CYCLES} imports killed, {} completed",
        done.len()
    );
    assert!(
        kills >= 10,
        "only {kills} kills: the test did not exercise crashes"
    );
    assert!(!done.is_empty());
    // Garbage from the killed imports is collectable, and the store stays sound.
    env.ok(&["gc"]);
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
}
