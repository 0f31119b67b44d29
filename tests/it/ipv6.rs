//! IPv6 and the network interface: `cas serve` listens on `[::]` for both families,
//! libtorrent on `[::1]` downloads from it and seeds to `cas get --peer [::1]:PORT`;
//! `--bind-interface` binds every socket to one interface.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::get::mktorrent;
use crate::netns::Lan;
use crate::service::Daemon;

/// A free port on `[::1]`.
fn free_port6() -> u16 {
    std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// libtorrent on `[::1]` downloading `torrent` from `[::1]:port`.
fn lt_download6(torrent: &Path, save: &Path, port: u16) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/lt_download.py");
    let me = free_port6();
    let out = Command::new("/usr/bin/python3")
        .env(
            "LT_SETTINGS",
            format!(r#"{{"listen_interfaces": "[::1]:{me}"}}"#),
        )
        .arg(script)
        .arg(torrent)
        .arg(save)
        .arg(me.to_string())
        .args(["::1", &port.to_string(), "60"])
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lt_download prints JSON")
}

#[test]
fn libtorrent_on_ipv6_loopback_downloads_from_cas_serve() {
    let env = Env::with_piece_length("64K");
    let data = random_bytes(91, (2 << 20) + 5);
    write(&env.path("d/f.bin"), &data);
    env.import(&env.path("d"), "d");
    let t = env.path("f.torrent");
    env.ok(&["torrent", "d:f.bin", "-o", t.to_str().unwrap()]);
    let serve = Daemon::start(&env, &[], &[], &["--listen", "[::1]:0"]);
    let got = env.path("got");
    let r = lt_download6(&t, &got, serve.port);
    assert_eq!(r["seeding"], true, "{r}");
    let name = blake3::hash(&data).to_hex().to_string();
    assert_eq!(std::fs::read(got.join(name)).unwrap(), data);
}

#[test]
fn cas_get_fetches_from_libtorrent_on_ipv6_loopback() {
    let env = Env::with_piece_length("64K");
    let data = random_bytes(92, (3 << 20) + 11);
    write(&env.path("seed/disk.img"), &data);
    let t = env.path("disk.torrent");
    mktorrent(16, &t, &env.path("seed/disk.img"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/lt_seed.py");
    let port = free_port6();
    let status = env.path("lt-seed.json");
    let mut seed = Proc::spawn(
        {
            let mut c = Command::new("/usr/bin/python3");
            c.env(
                "LT_SETTINGS",
                format!(r#"{{"listen_interfaces": "[::1]:{port}"}}"#),
            )
            .arg(script)
            .arg(&t)
            .arg(env.path("seed"))
            .arg(port.to_string())
            .arg(&status)
            .stdin(Stdio::null());
            c
        },
        env.path("lt-seed.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.contains("\"seeding\": true")) {
        seed.assert_running("lt_seed.py");
        assert!(Instant::now() < deadline, "libtorrent did not seed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.path("out");
    let r = env.json(&[
        "get",
        t.to_str().unwrap(),
        "--peer",
        &format!("[::1]:{port}"),
        "--listen",
        "[::1]:0",
        "--export",
        out.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    assert_eq!(r["bytes_from_wire"], data.len(), "{r}");
    assert_eq!(std::fs::read(out.join("disk.img")).unwrap(), data);
}

/// Whether a TCP connection from namespace node `from` to `host:port` is accepted.
fn connects(lan: &Lan, from: usize, host: &str, port: u16) -> bool {
    lan.exec(from, "/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)",
            host,
            &port.to_string(),
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn serve_listens_on_ipv6_and_ipv4_by_default() {
    if skip_without_root() {
        return;
    }
    let env = Env::with_piece_length("16K");
    let lan = Lan::new("dual", 1);
    let serve = Daemon::spawn({
        let mut c = lan.cmd(0, &env);
        c.arg("serve");
        c
    });
    for host in ["127.0.0.1", "::1", &lan.addr(0)] {
        assert!(
            connects(&lan, 0, host, serve.port),
            "no connection to {host}"
        );
    }
    let shown = env.ok(&["config", "show"]);
    assert!(shown.contains("serve.listen = [::]:0"), "{shown}");
}

#[test]
fn bind_interface_listens_and_connects_only_through_the_interface_named() {
    if skip_without_root() {
        return;
    }
    let env = Env::with_piece_length("64K");
    // An interface that does not exist: an error that names it.
    let err = env.fails(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--bind-interface",
        "nosuch0",
    ]);
    assert!(err.contains("nosuch0"), "{err}");
    let lan = Lan::new("bind", 2);
    let serve = Daemon::spawn({
        let mut c = lan.cmd(0, &env);
        c.args(["serve", "--listen", "0.0.0.0:0", "--bind-interface", "lan0"]);
        c
    });
    // The other node, over lan0, is answered; loopback, on the same node, is not.
    assert!(connects(&lan, 1, &lan.addr(0), serve.port));
    assert!(
        !connects(&lan, 0, "127.0.0.1", serve.port),
        "answered on lo"
    );
}
