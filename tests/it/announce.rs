//! `--announce-ip`: the address trackers are told to give peers for us, over HTTP
//! (`ip=`) and UDP (the announce's IP field).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::free_port;
use crate::service::Daemon;

#[test]
fn http_and_udp_trackers_are_told_the_announce_ip() {
    let env = Env::with_piece_length("16K");
    write(&env.path("d/f.bin"), &random_bytes(95, 100_000));
    env.import(&env.path("d"), "d");
    let ih = env.ok(&["magnet", "d:f.bin"]);
    let ih = ih
        .split("btih:")
        .nth(1)
        .map(|s| s[..40].to_string())
        .unwrap_or_else(|| panic!("no info-hash in {ih}"));
    let port = free_port();
    let log = env.path("announces.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/record_tracker.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script).arg(port.to_string()).arg(&log);
    let mut tracker = Proc::spawn(cmd, env.path("tracker.log"));
    wait_listening(port, &mut tracker, "record_tracker.py");
    let url = format!("http://127.0.0.1:{port}/announce");
    let _serve = Daemon::start(
        &env,
        &[],
        &[],
        &[
            "--listen",
            "127.0.0.1:0",
            "--tracker",
            &url,
            "--announce-ip",
            "192.0.2.7",
        ],
    );
    // The torrent's announce, its info-hash percent-encoded byte by byte.
    let encoded: String = (0..20)
        .map(|i| &ih[2 * i..2 * i + 2])
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let ours = text.lines().find(|l| {
            l.to_ascii_uppercase()
                .contains(&encoded.to_ascii_uppercase())
        });
        if let Some(q) = ours {
            assert!(q.split('&').any(|p| p == "ip=192.0.2.7"), "{q}");
            break;
        }
        tracker.assert_running("record_tracker.py");
        assert!(Instant::now() < deadline, "no announce of {ih}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown = env.ok(&["config", "show"]);
    assert!(shown.contains("serve.announce-ip = 192.0.2.7"), "{shown}");
}
