//! Cluster sync: three nodes on one switch (`netns::Lan`), each running `cas sync` on a
//! directory of its own, find each other by LSD alone (no `--peer`). A holds the
//! channel it made, B joined with the secret (a second publisher), C with the public
//! key (a follower). Each test checks what a user would: the same names, bytes, modes
//! and symlink targets in every directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::netns::Lan;

/// The listen port of every node (each has a namespace of its own).
const PORT: u16 = 7000;
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const NAMES: [&str; 3] = ["a", "b", "c"];
/// The sync's own working folder at the top of a directory, never published.
const WORK_DIR: &str = ".cas-sync";

/// A directory as a user compares it: relative path -> kind, mode, size and BLAKE3, or
/// link target. Modification times are left out.
type View = BTreeMap<String, String>;

/// The directory's view, or None when it changed during the walk.
fn view(root: &Path) -> Option<View> {
    let mut out = View::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).ok()? {
            let p = e.ok()?.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == WORK_DIR {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).ok()?;
            let desc = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).ok()?.display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                let bytes = std::fs::read(&p).ok()?;
                format!(
                    "file {:o} {} bytes {}",
                    m.permissions().mode() & 0o7777,
                    bytes.len(),
                    blake3::hash(&bytes).to_hex()
                )
            };
            out.insert(rel, desc);
        }
    }
    Some(out)
}

/// What differs between the views of `dirs`, each against the first.
fn differences(dirs: &[&Path]) -> String {
    let views: Vec<Option<View>> = dirs.iter().map(|d| view(d)).collect();
    let mut s = String::new();
    let Some(first) = &views[0] else {
        return format!("{} changed while read", dirs[0].display());
    };
    for (d, v) in dirs.iter().zip(&views).skip(1) {
        let Some(v) = v else {
            s += &format!("{} changed while read\n", d.display());
            continue;
        };
        for (k, x) in first {
            match v.get(k) {
                None => {
                    s += &format!(
                        "{k}: {x} in {}, missing in {}\n",
                        dirs[0].display(),
                        d.display()
                    )
                }
                Some(y) if y != x => {
                    s += &format!(
                        "{k}: {x} in {}, {y} in {}\n",
                        dirs[0].display(),
                        d.display()
                    )
                }
                Some(_) => {}
            }
        }
        for (k, y) in v {
            if !first.contains_key(k) {
                s += &format!(
                    "{k}: {y} in {}, missing in {}\n",
                    d.display(),
                    dirs[0].display()
                );
            }
        }
    }
    s
}

/// Polls until every directory of `dirs` looks the same and `pred` holds of it;
/// returns that view, or the differences on timeout.
fn wait_same_where(
    dirs: &[&Path],
    timeout: Duration,
    pred: &dyn Fn(&View) -> bool,
) -> Result<View, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let views: Vec<Option<View>> = dirs.iter().map(|d| view(d)).collect();
        if let Some(Some(first)) = views.first() {
            if views.iter().all(|v| v.as_ref() == Some(first)) && pred(first) {
                return Ok(first.clone());
            }
        }
        if Instant::now() >= deadline {
            let d = differences(dirs);
            return Err(if d.is_empty() {
                format!("the same everywhere, but not what was expected: {views:#?}")
            } else {
                d
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Polls until every directory of `dirs` looks the same.
fn wait_same(dirs: &[&Path], timeout: Duration) -> Result<View, String> {
    wait_same_where(dirs, timeout, &|_| true)
}

/// One `cas sync` node: its store, its directory, its daemon.
struct Node {
    env: Env,
    dir: PathBuf,
    child: Option<Child>,
    /// Standard output, line by line, as the daemon prints it.
    out: Arc<Mutex<Vec<String>>>,
    err_log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three nodes on one Lan, sharing the channel "team".
struct Team {
    // Fields drop in order: the daemons stop before their namespaces go.
    nodes: Vec<Node>,
    lan: Lan,
    public: String,
    secret: String,
}

impl Team {
    /// The stores, the channel and empty directories; no daemon yet.
    fn new(tag: &str) -> Team {
        let lan = Lan::new(tag, 3);
        // Stores of three piece lengths: the channel's (16K) decides how its trees
        // are cut, on every node.
        let nodes: Vec<Node> = ["16K", "1M", "64K"]
            .into_iter()
            .map(|piece_length| {
                let env = Env::with_piece_length(piece_length);
                let dir = env.path("dir");
                std::fs::create_dir_all(&dir).unwrap();
                let err_log = env.path("sync.err");
                Node {
                    env,
                    dir,
                    child: None,
                    out: Arc::default(),
                    err_log,
                }
            })
            .collect();
        let made = nodes[A]
            .env
            .json(&["channel", "new", "team", "--piece-length", "16K"]);
        assert_eq!(made["name"], "team", "{made}");
        let public = made["public"].as_str().unwrap().to_string();
        assert!(
            public.starts_with("caspub-") && public.len() == 7 + 64,
            "{public}"
        );
        let secret = nodes[A]
            .env
            .ok(&["channel", "export", "team"])
            .trim()
            .to_string();
        assert!(
            secret.starts_with("cassec-") && secret.len() == 7 + 64,
            "{secret}"
        );
        // A secret key is given in a file (or on standard input), never as an argument.
        let key_file = nodes[B].env.path("team.key");
        write(&key_file, secret.as_bytes());
        nodes[B].env.ok(&[
            "channel",
            "join",
            "team",
            "--key-file",
            key_file.to_str().unwrap(),
        ]);
        nodes[C].env.ok(&["channel", "join", "team", &public]);
        Team {
            nodes,
            lan,
            public,
            secret,
        }
    }

    fn dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }

    fn dirs(&self) -> Vec<&Path> {
        self.nodes.iter().map(|n| n.dir.as_path()).collect()
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.lan.addr(i))
    }

    /// Starts `cas sync` on every node, each waiting `quiet_ms` after a change.
    fn start(&mut self, quiet_ms: u64) {
        for i in 0..3 {
            self.start_node(i, quiet_ms);
        }
    }

    fn start_node(&mut self, i: usize, quiet_ms: u64) {
        let addr = self.addr(i);
        let node = &mut self.nodes[i];
        let mut cmd = self.lan.cmd(i, &node.env);
        cmd.arg("sync")
            .arg(&node.dir)
            .args(["--channel", "team", "--node", NAMES[i], "--listen", &addr])
            .args(["--quiet-ms", &quiet_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&node.err_log).unwrap());
        // CAS_LOG passes through, to read more of what the daemons do.
        if let Some(filter) = std::env::var_os("CAS_LOG") {
            cmd.env("CAS_LOG", filter);
        }
        let mut child = cmd.spawn().expect("run cas sync");
        let stdout = child.stdout.take().unwrap();
        let out = node.out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                out.lock().unwrap().push(line);
            }
        });
        node.child = Some(child);
        let out = node.out.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Some(l) = out.lock().unwrap().first() {
                break l.clone();
            }
            self.assert_running(&format!("cas sync on {}", NAMES[i]));
            assert!(
                Instant::now() < deadline,
                "cas sync on {} printed nothing in 30 s:\n{}",
                NAMES[i],
                self.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let node = &self.nodes[i];
        assert!(
            first.starts_with("syncing ")
                && first.contains(node.dir.to_str().unwrap())
                && first.ends_with(&format!(" on channel team at {addr}")),
            "first line of cas sync on {}: {first:?}",
            NAMES[i]
        );
    }

    /// Panics, with every node's logs, if a daemon has exited.
    fn assert_running(&mut self, what: &str) {
        for (i, name) in NAMES.iter().enumerate() {
            let exited = match &mut self.nodes[i].child {
                Some(c) => c.try_wait().unwrap(),
                None => None,
            };
            if let Some(status) = exited {
                panic!(
                    "{what}: cas sync on {name} exited ({status}):\n{}",
                    self.report()
                );
            }
        }
    }

    /// Node `i`'s entry of the channel in `cas status --json` (run through its daemon).
    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = self.nodes[i].env.run(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["channels"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "team")
            .cloned()
    }

    fn stderr(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].err_log).unwrap_or_default()
    }

    /// Every node's output, log and status: what a failure needs.
    fn report(&self) -> String {
        let mut s = String::new();
        for (i, name) in NAMES.iter().enumerate() {
            let out = self.nodes[i].out.lock().unwrap().join("\n");
            let status = self
                .status(i)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(no status)".into());
            s += &format!(
                "===== node {name} ({})\n--- stdout:\n{out}\n--- stderr (end):\n{}\n--- status: {status}\n",
                self.addr(i),
                tail(&self.nodes[i].err_log)
            );
        }
        s
    }

    /// Waits until every directory looks the same and `pred` holds of it.
    fn converge(&mut self, what: &str, timeout: Duration, pred: &dyn Fn(&View) -> bool) -> View {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            self.assert_running(what);
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(2));
            match wait_same_where(&self.dirs(), slice, pred) {
                Ok(v) => {
                    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
                    return v;
                }
                Err(diff) if Instant::now() >= deadline => panic!(
                    "{what}: the directories differ after {timeout:?}:\n{diff}\n{}",
                    self.report()
                ),
                Err(_) => {}
            }
        }
    }

    /// Waits until node `i`'s standard error has more than `before` lines with
    /// "refused".
    fn wait_refused(&mut self, i: usize, before: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while refusals(&self.stderr(i)) <= before {
            self.assert_running(what);
            assert!(
                Instant::now() < deadline,
                "{what}: no \"refused\" in the log of {} after 20 s:\n{}",
                NAMES[i],
                self.report()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn refusals(log: &str) -> usize {
    log.lines().filter(|l| l.contains("refused")).count()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Bytes in the store's pack files: what it has received so far.
fn packed(env: &Env) -> u64 {
    std::fs::read_dir(env.store().join("packs"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn edits_on_a_publisher_reach_every_node() {
    if skip_without_root() {
        return;
    }
    let t0 = Instant::now();
    let mut t = Team::new("sync-edit");
    // What A had before it synced.
    write(&t.dir(A).join("readme.txt"), b"before the sync\n");
    t.start(1000);
    t.converge("A's first tree", secs(90), &|v| {
        v.contains_key("readme.txt")
    });

    // Creations on A: a subdirectory, an executable, a symlink, 3 MB.
    let a = t.dir(A).to_path_buf();
    let big = random_bytes(11, 3_000_000);
    write(&a.join("docs/guide.md"), b"# Guide\n\nStep one.\n");
    write(&a.join("bin/run.sh"), b"#!/bin/sh\necho run\n");
    set_mode(&a.join("bin/run.sh"), 0o755);
    std::os::unix::fs::symlink("docs/guide.md", a.join("latest")).unwrap();
    write(&a.join("big.bin"), &big);
    write(&a.join("notes.txt"), b"one\n");
    let want = view(&a).unwrap();
    t.converge("creations on A", secs(90), &|v| *v == want);
    for i in [B, C] {
        let d = t.dir(i);
        assert_eq!(read(&d.join("big.bin")), big, "big.bin on {}", NAMES[i]);
        assert_eq!(read(&d.join("docs/guide.md")), b"# Guide\n\nStep one.\n");
        assert_eq!(mode(&d.join("bin/run.sh")), 0o755, "run.sh on {}", NAMES[i]);
        assert_eq!(
            std::fs::read_link(d.join("latest")).unwrap(),
            Path::new("docs/guide.md")
        );
    }

    // On A: a change of content, a rename, a symlink made again, a deletion, a mode.
    write(&a.join("notes.txt"), b"two\n");
    std::fs::rename(a.join("docs/guide.md"), a.join("docs/manual.md")).unwrap();
    std::fs::remove_file(a.join("latest")).unwrap();
    std::os::unix::fs::symlink("docs/manual.md", a.join("latest")).unwrap();
    std::fs::remove_file(a.join("readme.txt")).unwrap();
    set_mode(&a.join("bin/run.sh"), 0o700);
    let want = view(&a).unwrap();
    t.converge("changes on A", secs(90), &|v| *v == want);
    for i in [B, C] {
        let d = t.dir(i);
        assert!(!d.join("readme.txt").exists(), "readme.txt on {}", NAMES[i]);
        assert!(
            !d.join("docs/guide.md").exists(),
            "guide.md on {}",
            NAMES[i]
        );
        assert_eq!(read(&d.join("docs/manual.md")), b"# Guide\n\nStep one.\n");
        assert_eq!(read(&d.join("notes.txt")), b"two\n");
        assert_eq!(mode(&d.join("bin/run.sh")), 0o700, "run.sh on {}", NAMES[i]);
        assert_eq!(
            std::fs::read_link(d.join("latest")).unwrap(),
            Path::new("docs/manual.md")
        );
    }

    // B leads: a change, a deletion, a new file in a new directory.
    let b = t.dir(B).to_path_buf();
    write(&b.join("notes.txt"), b"three, from b\n");
    std::fs::remove_file(b.join("big.bin")).unwrap();
    write(&b.join("from-b/hello.txt"), b"hello from b\n");
    let want = view(&b).unwrap();
    t.converge("changes on B", secs(90), &|v| *v == want);
    for i in [A, C] {
        let d = t.dir(i);
        assert_eq!(read(&d.join("notes.txt")), b"three, from b\n");
        assert!(!d.join("big.bin").exists(), "big.bin on {}", NAMES[i]);
        assert_eq!(read(&d.join("from-b/hello.txt")), b"hello from b\n");
    }
    let published = t.status(B).expect("cas status --json")["applied_tree"].clone();
    for (i, name) in NAMES.iter().enumerate() {
        let deadline = Instant::now() + secs(20);
        let s = loop {
            let s = t.status(i).expect("cas status --json");
            if s["applied_tree"] == published || Instant::now() >= deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(s["applied_tree"], published, "{s}");
        assert_eq!(s["public"], t.public.as_str(), "{s}");
        assert_eq!(s["can_publish"], i != C, "{s}");
        assert_eq!(s["node"], *name, "{s}");
        assert_eq!(s["piece_length"], 16384, "{s}");
        // B, whose store cuts 1 MiB pieces, published the file in the channel's.
        let file = t.nodes[i].env.path("hello.torrent");
        let ref_file = format!("{}:from-b/hello.txt", published.as_str().unwrap());
        t.nodes[i]
            .env
            .ok(&["torrent", &ref_file, "-o", file.to_str().unwrap()]);
        let torrent = std::fs::read(&file).unwrap();
        assert!(
            torrent.windows(22).any(|w| w == b"12:piece lengthi16384e"),
            "{ref_file} on {name}: {}",
            String::from_utf8_lossy(&torrent)
        );
        // Nothing went wrong, so nothing says it did: not even librqbit's lines
        // about the torrents the sync restarts on purpose.
        if std::env::var_os("CAS_LOG").is_none() {
            let err = t.stderr(i);
            assert!(!err.contains("ERROR"), "{name}'s stderr:\n{err}");
        }
    }
    eprintln!("whole test: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The manifest torrent's info-hash of `tree`, from its magnet link.
fn manifest_of(env: &Env, tree: &str) -> cas::InfoHash {
    let magnet = env.ok(&["magnet", "--manifest", tree]);
    let hex = magnet
        .trim()
        .strip_prefix("magnet:?xt=urn:btih:")
        .and_then(|r| r.split('&').next())
        .unwrap_or_else(|| panic!("magnet: {magnet}"));
    hex.parse().unwrap()
}

/// Sends `datagram` over UDP from node `from`'s namespace to `to` (ip:port).
fn send_datagram(t: &Team, from: usize, to: &str, datagram: &[u8]) {
    let file = t.nodes[from].env.path("datagram.bin");
    std::fs::write(&file, datagram).unwrap();
    let (host, port) = to.rsplit_once(':').unwrap();
    let status = t
        .lan
        .exec(from, "/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.sendto(open(sys.argv[1], 'rb').read(), (sys.argv[2], int(sys.argv[3])))\n",
        ])
        .arg(&file)
        .args([host, port])
        .status()
        .unwrap();
    assert!(status.success(), "python3 sendto");
}

#[test]
fn updates_not_signed_by_the_channel_are_refused() {
    if skip_without_root() {
        return;
    }
    use cas::channel::{PublicKey, SecretKey, SignedUpdate, Update};
    let t0 = Instant::now();
    let mut t = Team::new("sync-forge");
    write(&t.dir(A).join("first.txt"), b"first\n");
    t.start(1000);
    t.converge("first tree", secs(90), &|v| v.contains_key("first.txt"));
    let old = t.status(A).unwrap();
    let old_tree = old["applied_tree"].as_str().unwrap().to_string();
    write(&t.dir(A).join("second.txt"), b"second\n");
    t.converge("second tree", secs(90), &|v| v.contains_key("second.txt"));
    let deadline = Instant::now() + secs(20);
    let now = loop {
        let s = t.status(C).unwrap();
        if s["applied_tree"] != old["applied_tree"] && !s["applied_seq"].is_null() {
            break s;
        }
        assert!(Instant::now() < deadline, "C's status: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let seq = now["newest_seq"].as_u64().unwrap();
    let tree: cas::TreeId = now["applied_tree"].as_str().unwrap().parse().unwrap();
    let before = view(t.dir(C)).unwrap();

    // Rolling back to the first tree, which every node holds: signed with a key of the
    // forger's own, and naming the channel's public key.
    let channel = PublicKey::parse(&t.public).unwrap();
    let manifest = manifest_of(&t.nodes[A].env, &old_tree);
    let update = |seq: u64| Update {
        channel,
        seq,
        tree: old_tree.parse().unwrap(),
        manifest,
        parent: Some(tree),
        node: "a".into(),
        time: cas::sync::now(),
    };
    let forged = SignedUpdate::sign(update(seq + 1), &SecretKey::generate());
    let datagram = cas::sync::wire::update_datagram(&forged);
    let (rb, rc) = (refusals(&t.stderr(B)), refusals(&t.stderr(C)));
    send_datagram(&t, A, &t.addr(C), &datagram);
    send_datagram(&t, A, &t.addr(B), &datagram);
    t.wait_refused(C, rc, "forged update sent to C");
    t.wait_refused(B, rb, "forged update sent to B");

    // The same rollback signed with the channel's own key, but an old sequence number.
    let replay = SignedUpdate::sign(update(1), &SecretKey::parse(&t.secret).unwrap());
    let rc = refusals(&t.stderr(C));
    send_datagram(
        &t,
        A,
        &t.addr(C),
        &cas::sync::wire::update_datagram(&replay),
    );
    t.wait_refused(C, rc, "old update sent to C");

    std::thread::sleep(secs(3));
    t.assert_running("after the forged updates");
    assert_eq!(view(t.dir(C)).unwrap(), before, "C's directory changed");
    assert_eq!(view(t.dir(B)).unwrap(), before, "B's directory changed");
    let s = t.status(C).unwrap();
    assert_eq!(s["newest_seq"].as_u64(), Some(seq), "{s}");
    assert_eq!(s["applied_tree"], now["applied_tree"], "{s}");

    // A genuine change still arrives.
    write(&t.dir(A).join("third.txt"), b"third\n");
    let v = t.converge("a genuine change after the forgeries", secs(90), &|v| {
        v.contains_key("third.txt")
    });
    assert!(
        v.contains_key("first.txt") && v.contains_key("second.txt"),
        "{v:?}"
    );
    let s = t.status(C).unwrap();
    assert!(s["applied_seq"].as_u64().unwrap() > seq, "{s}");
    eprintln!(
        "C refused:\n{}",
        t.stderr(C)
            .lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("whole test: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn concurrent_edits_keep_both_versions_everywhere() {
    if skip_without_root() {
        return;
    }
    let t0 = Instant::now();
    let mut t = Team::new("sync-conflict");
    write(&t.dir(A).join("shared.txt"), b"base\n");
    // A long quiet period: both edits are made before either node publishes.
    t.start(3000);
    t.converge("the base version", secs(90), &|v| {
        v.contains_key("shared.txt")
    });
    let on_a: &[u8] = b"edited on a\n";
    let on_b: &[u8] = b"edited on b, longer\n";
    write(&t.dir(A).join("shared.txt"), on_a);
    write(&t.dir(B).join("shared.txt"), on_b);
    let is_copy = |k: &str| k.starts_with("shared.txt.conflict-");
    t.converge("both edits", secs(120), &|v| {
        v.contains_key("shared.txt") && v.keys().any(|k| is_copy(k))
    });
    // Nothing moves any more.
    std::thread::sleep(secs(8));
    t.assert_running("after both edits");
    let v = wait_same(&t.dirs(), secs(30))
        .unwrap_or_else(|d| panic!("after both edits:\n{d}\n{}", t.report()));
    let copies: Vec<&String> = v.keys().filter(|k| is_copy(k)).collect();
    assert_eq!(copies.len(), 1, "{v:#?}");
    let copy = copies[0].as_str();
    // shared.txt.conflict-<node>-<time>, holding that node's version.
    let rest = copy.strip_prefix("shared.txt.conflict-").unwrap();
    let (node, time) = rest.split_once('-').unwrap_or_else(|| panic!("{copy}"));
    assert!(time.parse::<u64>().is_ok(), "{copy}");
    for (i, name) in NAMES.iter().enumerate() {
        let d = t.dir(i);
        let kept = read(&d.join("shared.txt"));
        let other = read(&d.join(copy));
        let mut both = [kept.as_slice(), other.as_slice()];
        both.sort();
        assert_eq!(both, [on_a, on_b], "on {name}");
        let loser = match node {
            "a" => on_a,
            "b" => on_b,
            _ => panic!("conflict copy named after {node:?}: {copy}"),
        };
        assert_eq!(other, loser, "{copy} on {name}");
    }
    eprintln!("whole test: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_follower_cut_off_mid_transfer_catches_up() {
    if skip_without_root() {
        return;
    }
    let t0 = Instant::now();
    let mut t = Team::new("sync-cut");
    t.lan.cap(C, "20mbit");
    write(&t.dir(A).join("small.txt"), b"small\n");
    t.start(1000);
    t.converge("the first tree", secs(90), &|v| v.contains_key("small.txt"));
    let packed0 = packed(&t.nodes[C].env);
    let big = random_bytes(12, 48 << 20);
    write(&t.dir(A).join("big.bin"), &big);
    let started = Instant::now();
    // Cut C's link once it has stored some of big.bin's pieces, well before all of them
    // (48 MiB take about 20 s at 20 mbit).
    let deadline = Instant::now() + secs(60);
    loop {
        t.assert_running("before the cut");
        let got = packed(&t.nodes[C].env) - packed0;
        if got > 4 << 20 {
            eprintln!(
                "C stored {got} bytes after {:.1} s; cutting its link",
                started.elapsed().as_secs_f64()
            );
            assert!(got < 40 << 20, "C received too much before the cut: {got}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C received nothing of big.bin in 60 s:\n{}",
            t.report()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.lan.link_down(C);
    std::thread::sleep(secs(5));
    assert!(
        !t.dir(C).join("big.bin").exists(),
        "big.bin on C before its link is back"
    );
    t.lan.link_up(C);
    let v = t.converge("C after its link came back", secs(180), &|v| {
        v.contains_key("big.bin")
    });
    assert!(v.contains_key("small.txt"));
    assert!(read(&t.dir(C).join("big.bin")) == big, "big.bin on C");
    eprintln!(
        "48 MiB to C at 20 mbit with a 5 s cut: {:.1} s; whole test {:.1} s",
        started.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
