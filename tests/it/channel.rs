//! Channels on the command line, and `cas sync` between two nodes on loopback with
//! peer hints (the LSD-only, three-node tests are in `sync`).

use std::time::{Duration, Instant};

use crate::common::*;

fn free_port() -> u16 {
    // UDP and TCP of one number: the update socket shares the listener's port.
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn channel_keys_are_made_joined_and_exported_with_clear_errors() {
    let a = Env::with_piece_length("16K");
    let made = a.json(&["channel", "new", "team"]);
    let public = made["public"].as_str().unwrap().to_string();
    assert!(
        public.starts_with("caspub-") && public.len() == 7 + 64,
        "{made}"
    );
    let secret = a.ok(&["channel", "export", "team"]).trim().to_string();
    assert!(secret.starts_with("cassec-") && secret.len() == 7 + 64);
    let err = a.fails(&["channel", "new", "team"]);
    assert!(
        err.contains("a channel named \"team\" exists already"),
        "{err}"
    );

    // A follower has no secret to give away; a publisher derives the same channel.
    let b = Env::with_piece_length("16K");
    b.ok(&["channel", "join", "team", &public]);
    let err = b.fails(&["channel", "export", "team"]);
    assert!(err.contains("has no secret key here"), "{err}");
    let c = Env::with_piece_length("16K");
    ok_with_stdin(&c, &["channel", "join", "team"], &secret);
    assert_eq!(c.ok(&["channel", "export", "team"]).trim(), secret);
    let listed = c.json(&["channel", "ls"]);
    assert_eq!(listed[0]["public"], public.as_str(), "{listed}");
    assert_eq!(listed[0]["can_publish"], true);

    let err = b.fails(&["channel", "join", "other", "caspub-1234"]);
    assert!(err.contains("is not a channel public key"), "{err}");
    let err = b.fails(&["sync", b.path("").to_str().unwrap(), "--channel", "nope"]);
    assert!(err.contains("no channel named \"nope\" here"), "{err}");
    // Nothing was written where the secret key lives but the owner.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.store().join("channels/team"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// Runs a cas command with `input` on its standard input; requires success.
fn ok_with_stdin(env: &Env, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = env
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cas {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::symlink_metadata(p).unwrap().permissions())
        & 0o777
}

#[test]
fn a_secret_key_is_never_taken_from_the_command_line_nor_left_readable() {
    let a = Env::with_piece_length("16K");
    let public = a.json(&["channel", "new", "team"])["public"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = a.ok(&["channel", "export", "team"]).trim().to_string();
    let hex = &secret["cassec-".len()..];

    // On the command line every local user sees it (ps, /proc/PID/cmdline), and the
    // store's lock file recorded it: refused, with what to do instead.
    let b = Env::with_piece_length("16K");
    let err = b.fails(&["channel", "join", "team", &secret]);
    assert!(
        err.contains("standard input") && err.contains("--key-file"),
        "{err}"
    );
    assert!(!err.contains(hex), "the error repeats the secret: {err}");
    let lock = std::fs::read_to_string(b.store().join("lock")).unwrap();
    assert!(
        !lock.contains(hex),
        "the lock file holds the secret: {lock}"
    );

    // From standard input, and from a file.
    ok_with_stdin(&b, &["channel", "join", "team"], &secret);
    assert_eq!(b.ok(&["channel", "export", "team"]).trim(), secret);
    let c = Env::with_piece_length("16K");
    let key_file = c.path("team.key");
    write(&key_file, format!("{secret}\n").as_bytes());
    c.ok(&[
        "channel",
        "join",
        "team",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(c.json(&["channel", "ls"])[0]["can_publish"], true);
    // A public key may still be given as an argument, or on standard input.
    let d = Env::with_piece_length("16K");
    ok_with_stdin(&d, &["channel", "join", "team"], &public);
    assert_eq!(d.json(&["channel", "ls"])[0]["public"], public.as_str());

    // What another local user could read of the stores: nothing.
    for env in [&a, &b, &c] {
        let lock = std::fs::read_to_string(env.store().join("lock")).unwrap();
        assert!(!lock.contains(hex), "{lock}");
        assert_eq!(mode(&env.store()), 0o700, "the store directory");
        assert_eq!(mode(&env.store().join("lock")), 0o600, "the lock file");
        assert_eq!(mode(&env.store().join("channels")), 0o700, "channels/");
        assert_eq!(
            mode(&env.store().join("channels/team")),
            0o600,
            "the key file"
        );
    }
}

/// Starts `cas sync` and returns it once it printed its first line.
fn start_sync(env: &Env, dir: &std::path::Path, node: &str, port: u16, peer: Option<u16>) -> Proc {
    let mut cmd = env.cmd();
    cmd.args([
        "sync",
        dir.to_str().unwrap(),
        "--channel",
        "team",
        "--node",
        node,
    ])
    .args(["--listen", &format!("127.0.0.1:{port}"), "--no-lsd"]);
    if let Some(p) = peer {
        cmd.args(["--peer", &format!("127.0.0.1:{p}")]);
    }
    let mut p = Proc::spawn(cmd, env.path(&format!("{node}.log")));
    wait_listening(port, &mut p, "cas sync");
    p
}

fn wait_for(what: &str, nodes: &[&Proc], mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > Duration::from_secs(60) {
            let logs: Vec<String> = nodes.iter().map(|n| n.log_text()).collect();
            panic!(
                "timed out waiting for {what}; logs:\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_nodes_on_loopback_follow_each_others_changes() {
    let a = Env::with_piece_length("16K");
    let public = a.json(&["channel", "new", "team"])["public"]
        .as_str()
        .unwrap()
        .to_string();
    let b = Env::with_piece_length("16K");
    b.ok(&["channel", "join", "team", &public]);
    let (da, db) = (a.path("dir"), b.path("dir"));
    std::fs::create_dir_all(da.join("sub")).unwrap();
    // B's directory does not exist yet: cas sync makes it.
    write(&da.join("sub/one.bin"), &random_bytes(1, 200_000));
    write(&da.join("two.txt"), b"two\n");
    let (pa, pb) = (free_port(), free_port());
    let mut na = start_sync(&a, &da, "a", pa, None);
    let mut nb = start_sync(&b, &db, "b", pb, Some(pa));
    let same = || snapshot(&da) == snapshot(&db);
    wait_for("b to receive a's directory", &[&na, &nb], same);

    // A renames and deletes: B follows, and the rename costs no transfer.
    let before = b.json(&["status"])["channels"][0]["bytes_in"]
        .as_u64()
        .unwrap();
    std::fs::rename(da.join("sub/one.bin"), da.join("one-renamed.bin")).unwrap();
    std::fs::remove_file(da.join("two.txt")).unwrap();
    wait_for("b to follow a rename", &[&na, &nb], || {
        same() && db.join("one-renamed.bin").exists()
    });
    let status = b.json(&["status"]);
    let after = status["channels"][0]["bytes_in"].as_u64().unwrap();
    assert!(
        after - before < 16 << 10,
        "a rename fetched {} bytes",
        after - before
    );
    assert_eq!(status["channels"][0]["applied_seq"], 2, "{status}");

    // B has only the public key: its edit stays local and is not published.
    write(&db.join("local.txt"), b"mine\n");
    wait_for("b to scan its edit", &[&na, &nb], || {
        nb.log_text().contains("no secret key for channel team")
    });
    assert!(!da.join("local.txt").exists());
    // A's next change arrives without taking B's local file away.
    write(&da.join("three.txt"), b"three\n");
    wait_for("b to receive three.txt", &[&na, &nb], || {
        db.join("three.txt").exists()
    });
    assert_eq!(std::fs::read(db.join("local.txt")).unwrap(), b"mine\n");
    na.assert_running("cas sync a");
    nb.assert_running("cas sync b");
    let log = nb.log_text();
    assert!(log.contains("no secret key for channel team"), "{log}");
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

/// A holder of the channel's secret key signs updates whose node name is a path:
/// the conflict copy of `f` would have been renamed to `DIR/f.conflict-x/../../out/
/// pwn-<time>`, outside the follower's directory (`f.conflict-x/` is in the tree).
#[test]
fn an_update_whose_node_name_is_a_path_is_refused_and_nothing_outside_changes() {
    use cas::channel::{PublicKey, SecretKey, SignedUpdate, Update};
    let a = Env::with_piece_length("16K");
    let public = a.json(&["channel", "new", "team"])["public"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = SecretKey::parse(a.ok(&["channel", "export", "team"]).trim()).unwrap();
    let b = Env::with_piece_length("16K");
    b.ok(&["channel", "join", "team", &public]);
    let (da, db) = (a.path("dir"), b.path("dir"));
    write(&da.join("f"), b"base\n");
    // What the follower's user keeps next to its synced directory.
    const TIME: u64 = 1_700_000_000;
    let victim = b.path(&format!("out/pwn-{TIME}"));
    write(&victim, b"precious\n");
    let (pa, pb) = (free_port(), free_port());
    let mut na = start_sync(&a, &da, "a", pa, None);
    let mut nb = start_sync(&b, &db, "b", pb, Some(pa));
    wait_for("b to receive f", &[&na, &nb], || {
        std::fs::read(db.join("f")).is_ok_and(|f| f == b"base\n")
    });
    let status = a.json(&["status"]);
    let base: cas::TreeId = status["channels"][0]["applied_tree"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let seq = status["channels"][0]["applied_seq"].as_u64().unwrap();

    // Two trees made on the publisher (its engine seeds them), both with a
    // directory f.conflict-x/.
    let tree = |name: &str, f: &[u8]| {
        let src = a.path(name);
        write(&src.join("f"), f);
        std::fs::create_dir_all(src.join("f.conflict-x")).unwrap();
        let t = a.import(&src, name)["tree"].as_str().unwrap().to_string();
        (t.parse::<cas::TreeId>().unwrap(), manifest_of(&a, &t))
    };
    let (t1, m1) = tree("t1", b"the publisher's file\n");
    let (t2, m2) = tree("t2", b"remote\n");
    let send = |u: Update| {
        let signed = SignedUpdate::sign(u, &secret);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(
            &cas::sync::wire::update_datagram(&signed),
            ("127.0.0.1", pb),
        )
        .unwrap();
    };
    let channel = PublicKey::parse(&public).unwrap();
    send(Update {
        channel,
        seq: seq + 1,
        tree: t1,
        manifest: m1,
        parent: Some(base),
        node: "x/../../out/pwn".into(),
        time: TIME,
    });
    let refused = |log: &str| {
        log.lines()
            .any(|l| l.contains("refused") && l.contains("node name"))
    };
    wait_for(
        "b to refuse or apply the hostile update",
        &[&na, &nb],
        || refused(&nb.log_text()) || db.join("f.conflict-x").exists(),
    );
    // The next update changes f: a conflict copy of f would be made if the last
    // one had been applied.
    send(Update {
        channel,
        seq: seq + 2,
        tree: t2,
        manifest: m2,
        parent: Some(base),
        node: "a".into(),
        time: cas::sync::now(),
    });
    wait_for("b to apply the next update", &[&na, &nb], || {
        std::fs::read(db.join("f")).is_ok_and(|f| f == b"remote\n")
    });
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious\n",
        "a file outside the synced directory was replaced"
    );
    assert_eq!(std::fs::read_dir(b.path("out")).unwrap().count(), 1);
    na.assert_running("cas sync a");
    nb.assert_running("cas sync b");
    let log = nb.log_text();
    assert!(refused(&log), "{log}");
}
