//! Network namespaces for tests that need a real network: a `Lan` is a switch (a bridge
//! in a hub namespace, multicast snooping off so LSD's multicast reaches every port)
//! with a node namespace on each port, joined by a veth pair. Links can be slowed with
//! `tc tbf` and cut. Everything is removed on drop, with every process left inside.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::common::*;

/// Runs `ip ARGS` and requires success.
pub fn ip(args: &[&str]) {
    run_ok("ip", args);
}

/// Runs `tc ARGS` and requires success.
pub fn tc(args: &[&str]) {
    run_ok("tc", args);
}

fn run_ok(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {prog} (iproute2): {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills every process in namespace `ns`, then deletes it.
pub fn remove_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").arg("-9").arg(pid).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// The third byte of each `Lan`'s 10.98.x.0/24, so that the Lans of one test binary
/// never share addresses (their logs stay readable side by side).
static SUBNET: AtomicU8 = AtomicU8::new(1);

/// `n` node namespaces on one switch; node `i` is 10.98.k.(i+1)/24.
pub struct Lan {
    hub: String,
    nodes: Vec<String>,
    subnet: u8,
}

/// Each node's end of its link.
const DEV: &str = "lan0";

impl Lan {
    /// Namespaces named after `tag` and this process (tests running at once need their
    /// own tags).
    pub fn new(tag: &str, n: usize) -> Lan {
        assert!((1..=200).contains(&n), "a Lan has 1 to 200 nodes");
        let pid = std::process::id();
        let subnet = SUBNET.fetch_add(1, Ordering::Relaxed);
        let lan = Lan {
            hub: format!("cas-{tag}-hub-{pid}"),
            nodes: (0..n).map(|i| format!("cas-{tag}-{i}-{pid}")).collect(),
            subnet,
        };
        // Made one by one, so that a failure part-way still cleans up (drop).
        ip(&["netns", "add", &lan.hub]);
        ip(&["-n", &lan.hub, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &lan.hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &lan.hub, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = &lan.nodes[i];
            let port = Lan::port(i);
            let addr = format!("{}/24", lan.addr(i));
            ip(&["netns", "add", ns]);
            ip(&[
                "link", "add", &port, "netns", &lan.hub, "type", "veth", "peer", "name", DEV,
                "netns", ns,
            ]);
            ip(&["-n", &lan.hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &lan.hub, "link", "set", &port, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "addr", "add", &addr, "dev", DEV]);
            ip(&["-n", ns, "link", "set", DEV, "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", DEV]);
        }
        lan
    }

    /// The hub's end of node `i`'s link (at most 15 bytes, unique in the hub).
    fn port(i: usize) -> String {
        format!("p{i}")
    }

    /// Node `i`'s address, without prefix length.
    pub fn addr(&self, i: usize) -> String {
        format!("10.98.{}.{}", self.subnet, i + 1)
    }

    /// Any program, run in node `i`'s namespace.
    pub fn exec(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nodes[i], program]);
        c
    }

    /// The `cas` under test, in node `i`'s namespace, on `env`'s store.
    pub fn cmd(&self, i: usize, env: &Env) -> Command {
        let mut c = self.exec(i, env!("CARGO_BIN_EXE_cas"));
        env.for_cas(&mut c);
        c
    }

    /// Limits node `i`'s link to `rate` (tc syntax, e.g. "20mbit") both ways, with a
    /// token bucket on each end.
    pub fn cap(&self, i: usize, rate: &str) {
        for (ns, dev) in [
            (self.hub.clone(), Lan::port(i)),
            (self.nodes[i].clone(), DEV.into()),
        ] {
            tc(&[
                "-n", &ns, "qdisc", "replace", "dev", &dev, "root", "tbf", "rate", rate, "burst",
                "64kb", "latency", "50ms",
            ]);
        }
    }

    /// Cuts node `i`'s link at the switch: its packets go nowhere, its own address and
    /// routes stay, as when a cable is pulled out of the switch.
    pub fn link_down(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &Lan::port(i), "down"]);
    }

    /// Plugs node `i`'s link back in.
    pub fn link_up(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &Lan::port(i), "up"]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.nodes {
            remove_ns(ns);
        }
        remove_ns(&self.hub);
    }
}

/// The harness itself: LSD's multicast crosses the switch both ways, so two nodes
/// fetch a tree from a third that they know only by LSD.
#[test]
fn a_lan_carries_lsd_between_its_nodes() {
    if skip_without_root() {
        return;
    }
    let src_env = Env::with_piece_length("16K");
    let src = src_env.path("shared");
    write(&src.join("x.bin"), &random_bytes(81, 300_000));
    write(&src.join("y.txt"), b"y\n");
    let imported = src_env.import(&src, "shared");
    let magnet = src_env.ok(&["magnet", "--manifest", "shared"]);
    let lan = Lan::new("lan", 3);
    let mut serve = lan.cmd(0, &src_env);
    serve.args(["serve", "--listen", &format!("{}:0", lan.addr(0)), "--lsd"]);
    let mut serve = Proc::spawn(serve, src_env.path("serve.log"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !serve.log_text().contains("seeding") {
        serve.assert_running("cas serve");
        assert!(
            std::time::Instant::now() < deadline,
            "cas serve did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let envs: Vec<Env> = (1..3).map(|_| Env::with_piece_length("16K")).collect();
    let gets: Vec<_> = envs
        .iter()
        .enumerate()
        .map(|(k, env)| {
            let i = k + 1;
            lan.cmd(i, env)
                .args(["get", magnet.trim(), "--lsd", "--timeout", "60", "--json"])
                .args(["--listen", &format!("{}:0", lan.addr(i))])
                .args(["--export", env.path("out").to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (g, env) in gets.into_iter().zip(&envs) {
        let out = g.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cas get: {}\nserve: {}",
            String::from_utf8_lossy(&out.stderr),
            serve.log_text()
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["tree"], imported["tree"], "{r}");
        assert_eq!(snapshot(&env.path("out")), snapshot(&src));
    }
}
