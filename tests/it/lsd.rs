//! Two cas daemons find each other by Local Service Discovery (BEP 14), each in a
//! network namespace of its own joined by a veth pair, made and removed here.

use std::process::{Command, Stdio};

use crate::common::*;
use crate::netns::{ip, remove_ns};

/// Two namespaces joined by a veth pair, 10.99.0.1 and 10.99.0.2, multicast routed
/// over the link. Removed on drop, with every process left in them.
pub struct Link {
    pub a: String,
    pub b: String,
}

impl Link {
    /// Namespaces named after `test` (tests running at once need their own).
    pub fn new(test: &str) -> Link {
        let tag = format!("{}", std::process::id());
        let link = Link {
            a: format!("cas-{test}-a-{tag}"),
            b: format!("cas-{test}-b-{tag}"),
        };
        ip(&["netns", "add", &link.a]);
        ip(&["netns", "add", &link.b]);
        ip(&[
            "link", "add", "va", "netns", &link.a, "type", "veth", "peer", "name", "vb", "netns",
            &link.b,
        ]);
        for (ns, dev, addr) in [
            (&link.a, "va", "10.99.0.1/24"),
            (&link.b, "vb", "10.99.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev]);
        }
        link
    }

    pub fn in_ns(ns: &str, env: &Env) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_cas")])
            .env("CAS_STORE", env.store())
            .env_remove("CAS_LOG");
        c
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        remove_ns(&self.a);
        remove_ns(&self.b);
    }
}

#[test]
fn two_daemons_find_each_other_by_lsd_in_network_namespaces() {
    if skip_without_root() {
        return;
    }
    let a = Env::with_piece_length("16K");
    let src = a.path("shared");
    sample_tree(&src, 16 << 10);
    write(&src.join("more.bin"), &random_bytes(8, 500_000));
    let imported = a.import(&src, "shared");
    let magnet = a.ok(&["magnet", "--manifest", "shared"]);
    let b = Env::with_piece_length("16K");
    let link = Link::new("lsd");
    let mut serve = Link::in_ns(&link.a, &a)
        .args(["serve", "--listen", "10.99.0.1:0", "--lsd"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("seeding"), "{line}");
    // No peer, no tracker: B finds A only by LSD.
    let out_dir = b.path("out");
    let out = Link::in_ns(&link.b, &b)
        .args([
            "get",
            magnet.trim(),
            "--listen",
            "10.99.0.2:0",
            "--lsd",
            "--timeout",
            "120",
        ])
        .args(["--export", out_dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        out.status.success(),
        "cas get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tree"], imported["tree"], "{r}");
    assert_eq!(snapshot(&out_dir), snapshot(&src));
}
