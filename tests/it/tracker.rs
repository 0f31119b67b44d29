//! Discovery through a real tracker (opentracker on loopback), no peer hints.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::serve::{free_port, Serve};

/// opentracker on loopback serving only the whitelisted info-hashes; killed on drop.
struct Tracker {
    child: Child,
    url: String,
}

impl Tracker {
    fn start(env: &Env, info_hashes: &[String]) -> Tracker {
        let whitelist = env.path("whitelist");
        let mut f = std::fs::File::create(&whitelist).unwrap();
        for ih in info_hashes {
            writeln!(f, "{ih}").unwrap();
        }
        let port = free_port();
        let child = Command::new("opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
            ])
            .arg("-w")
            .arg(&whitelist)
            .current_dir(env.path(""))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run opentracker (apt install opentracker)");
        // Wait until it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Tracker {
            child,
            url: format!("http://127.0.0.1:{port}/announce"),
        }
    }
}

impl Tracker {
    /// Waits until some peer has announced `ih`.
    fn wait_for_peer(&self, ih: &str) {
        use std::io::Read;
        let port = self
            .url
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .unwrap();
        let escaped: String = (0..ih.len())
            .step_by(2)
            .map(|i| format!("%{}", &ih[i..i + 2]))
            .collect();
        for _ in 0..200 {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap())).unwrap();
            write!(c, "GET /scrape?info_hash={escaped} HTTP/1.0\r\n\r\n").unwrap();
            let mut body = Vec::new();
            let _ = c.read_to_end(&mut body);
            let text = String::from_utf8_lossy(&body);
            let nobody = text.contains("8:completei0e") && text.contains("10:incompletei0e");
            if text.contains("completei") && !nobody {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no peer announced {ih} to the tracker");
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_tree_is_found_and_fetched_through_opentracker() {
    let a = Env::with_piece_length("16K");
    let src = a.path("docs");
    sample_tree(&src, 16 << 10);
    let imported = a.import(&src, "docs");
    let magnet = a.ok(&["magnet", "--manifest", "docs"]);
    let torrents: Vec<String> = std::fs::read_dir(a.store().join("torrents"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let tracker = Tracker::start(&a, &torrents);
    let _serve = Serve::start_with(&a, &["--tracker", &tracker.url]);
    let manifest_ih = magnet.split("btih:").nth(1).unwrap()[..40].to_string();
    tracker.wait_for_peer(&manifest_ih);
    let b = Env::with_piece_length("16K");
    let out = b.path("out");
    let r = b.json(&[
        "get",
        magnet.trim(),
        "--tracker",
        &tracker.url,
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "90",
        "--export",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["tree"], imported["tree"], "{r}");
    assert_eq!(snapshot(&out), snapshot(&src));
}
