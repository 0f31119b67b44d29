//! A test that cannot run here for want of a capability (root, `/dev/fuse`, network
//! namespaces) skips with a line saying why, but fails in CI, as a missing tool does.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use crate::common::*;

/// Runs one test of this binary as a user without root (nobody, when the tests run
/// as root), with `CI` set to `ci` or unset.
fn run_unprivileged(test: &str, ci: Option<&str>) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env_remove("CI")
        .current_dir("/");
    if let Some(v) = ci {
        c.env("CI", v);
    }
    if is_root() {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_missing_capability_fails_under_ci_and_skips_with_a_reason_elsewhere() {
    for (test, capability) in [
        (
            "mount::a_mounted_tree_reads_back_as_its_source",
            "mounting needs root",
        ),
        (
            "sync::edits_on_a_publisher_reach_every_node",
            "network namespaces need root",
        ),
    ] {
        let o = run_unprivileged(test, Some("true"));
        assert!(
            !o.status.success(),
            "{test} passed under CI=true without root:\n{}",
            text(&o)
        );
        assert!(
            text(&o).contains(&format!("missing capability: {capability}")),
            "{test}:\n{}",
            text(&o)
        );
        for ci in [None, Some("false")] {
            let o = run_unprivileged(test, ci);
            assert!(
                o.status.success(),
                "{test} failed without CI ({ci:?}):\n{}",
                text(&o)
            );
            assert!(
                text(&o).contains(&format!("SKIPPED: {capability}")),
                "{test}:\n{}",
                text(&o)
            );
        }
    }
}
