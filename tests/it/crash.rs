//! Crash consistency: `cas import`, `cas get` and `cas gc` killed with SIGKILL at
//! random instants, 100 times each. After every kill, fsck is clean (no chunk whose
//! hash differs from its key, no reference to a missing chunk) and everything that
//! had reported success reads back.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs `cmd`, killing it after `delay` unless it has ended; `None` if killed.
fn run_or_kill(mut cmd: Command, delay: Duration) -> (Option<ExitStatus>, Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (Some(s), start.elapsed());
        }
        if start.elapsed() >= delay {
            child.kill().unwrap();
            child.wait().unwrap();
            return (None, start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn fsck_clean(env: &Env, when: &str) {
    let out = env.run(&["fsck"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fsck {when}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn import_killed_at_random_instants_leaves_the_store_consistent() {
    const CYCLES: u64 = 100;
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

#[test]
fn get_killed_at_random_instants_leaves_the_store_consistent() {
    const CYCLES: u64 = 100;
    const FILES: u64 = 12;
    // A seeder: another store with FILES files, served on loopback.
    let a = Env::with_piece_length("64K");
    let src = a.path("src");
    let mut want = Vec::new();
    for i in 0..FILES {
        let bytes = random_bytes(2000 + i, (3 << 20) + 17 * i as usize);
        write(&src.join(format!("f{i}.bin")), &bytes);
        want.push(bytes);
    }
    let imported = a.import(&src, "src");
    let ihs: Vec<String> = (0..FILES)
        .map(|i| {
            imported["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"] == format!("f{i}.bin"))
                .unwrap()["info_hash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let serve = crate::serve::Serve::start(&a);
    let peer = format!("127.0.0.1:{}", serve.port);
    let b = Env::with_piece_length("64K");
    let mut r = rng(61);
    let mut done = std::collections::BTreeSet::new();
    let (mut kills, mut span) = (0, Duration::ZERO);
    for cycle in 0..CYCLES {
        let i = (cycle % FILES) as usize;
        let mut cmd = b.cmd();
        cmd.args(["get", &ihs[i], "--peer", &peer, "--timeout", "60"]);
        let delay = if cycle == 0 {
            Duration::from_secs(120)
        } else {
            Duration::from_micros(random_range(&mut r, 0, span.as_micros() as u64 * 6 / 5 + 1))
        };
        match run_or_kill(cmd, delay) {
            (Some(s), took) => {
                assert!(s.success(), "uninterrupted get {cycle} failed");
                if cycle == 0 {
                    span = took;
                }
                done.insert(i);
            }
            (None, _) => kills += 1,
        }
        fsck_clean(&b, &format!("after get cycle {cycle}"));
        // Every torrent fetched to the end reads back whole.
        for &j in &done {
            let out = b.path(&format!("out-{cycle}-{j}"));
            b.ok(&["export", &ihs[j], out.to_str().unwrap()]);
            let name = blake3::hash(&want[j]).to_hex().to_string();
            assert!(
                std::fs::read(out.join(name)).unwrap() == want[j],
                "file {j} after cycle {cycle}"
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    eprintln!(
        "{kills} of {CYCLES} gets killed, {} files complete",
        done.len()
    );
    assert!(
        kills >= 10,
        "only {kills} kills: the test did not exercise crashes"
    );
}

#[test]
fn gc_killed_at_random_instants_leaves_the_store_consistent() {
    const CYCLES: u64 = 100;
    let env = Env::with_piece_length("64K");
    let mut r = rng(62);
    let keep = random_bytes(3000, 2 << 20);
    write(&env.path("keep/k.bin"), &keep);
    env.import(&env.path("keep"), "keep");
    let (mut kills, mut span) = (0, Duration::ZERO);
    let mut last: Option<(String, Vec<u8>)> = None;
    for cycle in 0..CYCLES {
        // Each cycle makes garbage: a new tree, the previous one dropped.
        let dir = env.path(&format!("g{cycle}"));
        let bytes = random_bytes(3001 + cycle, 1 << 20);
        write(&dir.join("g.bin"), &bytes);
        let name = format!("g{cycle}");
        env.import(&dir, &name);
        if let Some((old, _)) = &last {
            env.ok(&["rm", old]);
        }
        last = Some((name, bytes));
        let mut cmd = env.cmd();
        cmd.arg("gc");
        // Every tenth collection runs to the end and sets the scale of the kill instants.
        let delay = if cycle % 10 == 0 {
            Duration::from_secs(120)
        } else {
            Duration::from_micros(random_range(&mut r, 0, span.as_micros() as u64 * 6 / 5 + 1))
        };
        match run_or_kill(cmd, delay) {
            (Some(s), took) => {
                assert!(s.success(), "uninterrupted gc {cycle} failed");
                span = span.max(took);
            }
            (None, _) => kills += 1,
        }
        fsck_clean(&env, &format!("after gc cycle {cycle}"));
        let out = env.cmd().args(["cat", "keep:k.bin"]).output().unwrap();
        assert!(out.stdout == keep, "keep after cycle {cycle}");
        let (name, bytes) = last.as_ref().unwrap();
        let out = env
            .cmd()
            .args(["cat", &format!("{name}:g.bin")])
            .output()
            .unwrap();
        assert!(out.stdout == *bytes, "{name} after cycle {cycle}");
    }
    eprintln!("{kills} of {CYCLES} collections killed");
    assert!(
        kills >= 10,
        "only {kills} kills: the test did not exercise crashes"
    );
    env.ok(&["gc"]);
    fsck_clean(&env, "at the end");
}
