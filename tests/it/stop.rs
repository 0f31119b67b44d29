//! SIGTERM stops `cas serve` and `cas sync` at once, cleanly: exit status 0, what was
//! received durable, `cas.sock` removed, the store free for the next command.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::service::Daemon;

#[test]
fn sigterm_stops_serve_at_once_removes_its_socket_and_frees_the_store() {
    let env = Env::with_piece_length("64K");
    write(&env.path("d/a.bin"), &random_bytes(5, 16 << 20));
    env.import(&env.path("d"), "d");
    let t = env.path("a.torrent");
    env.ok(&["torrent", "d:a.bin", "-o", t.to_str().unwrap()]);
    let mut serve = Daemon::start(
        &env,
        &[],
        &[],
        &["--listen", "127.0.0.1:0", "--upload-limit", "2M"],
    );
    assert!(env.store().join("cas.sock").exists());
    // Stopped in the middle of an upload to libtorrent.
    let (port, got) = (serve.port, env.path("got"));
    let peer = std::thread::spawn(move || crate::serve::lt_download_within(&t, &got, port, 6));
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.json(&["status"])["node"]["uploaded"].as_u64() < Some(1 << 20) {
        assert!(Instant::now() < deadline, "libtorrent is not downloading");
        std::thread::sleep(Duration::from_millis(100));
    }
    serve.signal(libc::SIGTERM);
    let (took, ok) = serve.wait_exit(Duration::from_secs(10));
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(ok, "cas serve did not exit 0 on SIGTERM");
    assert_stopped_promptly(&env, took);
    // The store is free: a command opens it itself.
    assert!(env.ok(&["ls"]).contains('d'));
    let r = peer.join().unwrap();
    assert_ne!(r["seeding"], true, "the download was not cut: {r}");
}

#[test]
fn sigterm_stops_sync_at_once() {
    let env = Env::with_piece_length("16K");
    env.ok(&["channel", "new", "c"]);
    write(&env.path("dir/a.bin"), &random_bytes(6, 1 << 20));
    let mut child = env
        .cmd()
        .args(["sync", env.path("dir").to_str().unwrap(), "--channel", "c"])
        .args(["--no-lsd", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("syncing "), "{line}");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("published update 1"), "{line}");
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cas sync still runs"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    eprintln!("SIGTERM to exit (sync): {took:?}");
    assert!(status.success(), "{status}");
    assert_stopped_promptly(&env, took);
    assert!(env.ok(&["channel", "ls"]).contains('c'));
}

/// A stop within half a second of SIGTERM, its control socket gone.
fn assert_stopped_promptly(env: &Env, took: Duration) {
    assert!(
        took < Duration::from_millis(500),
        "SIGTERM to exit took {took:?}"
    );
    assert!(
        !env.store().join("cas.sock").exists(),
        "cas.sock left behind"
    );
}
