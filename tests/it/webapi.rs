//! `cas serve --http`: qBittorrent's Web API driven by python qbittorrent-api (the
//! library seedbox tools use) and by the request sequences of Sonarr, cross-seed and
//! autobrr replayed as raw HTTP; bad input refused with nothing stored changed;
//! `/metrics` parsed by prometheus-client.

mod metrics;
mod oracle;
mod replay;
mod tools;
mod torrents;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "a-long-password";

/// A `cas serve --http` on loopback ports the OS picks, stopped on drop.
pub struct Web {
    child: Child,
    pub port: u16,
}

impl Web {
    /// With the config file `config` and more flags.
    pub fn start(env: &Env, config: &Path, args: &[&str]) -> Web {
        let mut child = env
            .cmd()
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port = None;
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if let Some(addr) = line.trim().strip_prefix("web API on http://") {
                port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        let port = port.expect("cas serve says where its web API listens");
        // Its later lines are not read: keep the pipe from filling.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Web { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it as systemd would (SIGTERM) and waits.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Web {
    /// SIGTERM first, so that a mount goes with the process; SIGKILL after 10 s.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file: the login, and `data` as the directory adds may name.
pub fn config(env: &Env, data: &Path) -> PathBuf {
    let p = env.path("config.toml");
    write(
        &p,
        format!(
            "[http]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\nsave-paths = [\"{}\"]\n",
            data.display()
        )
        .as_bytes(),
    );
    p
}

/// Whether python qbittorrent-api and prometheus-client are there (else skipped,
/// or a failure under CI).
pub fn have_python_clients() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import qbittorrentapi, prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok || !lacks_capability(
        "python qbittorrent-api and prometheus-client for /usr/bin/python3 (bash tests/run.sh installs them)",
    )
}

/// Runs `calls` ([method, kwargs] of qbittorrentapi.Client) as `user`; each
/// result is `{"ok": ...}` or `{"error": class, "message": ...}`.
pub fn qbt(web: &Web, user: &str, password: &str, calls: Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/webapi/client.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args([&web.url(), user, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &calls).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), calls.as_array().unwrap().len());
    results
}

/// The results, each required to be a success.
pub fn all_ok(results: Vec<Value>, calls: &Value) -> Vec<Value> {
    results
        .into_iter()
        .zip(calls.as_array().unwrap())
        .map(|(r, c)| match r.get("ok") {
            Some(v) => v.clone(),
            None => panic!("{c}: {r}"),
        })
        .collect()
}

pub fn run_ok(web: &Web, calls: Value) -> Vec<Value> {
    all_ok(qbt(web, USER, PASSWORD, calls.clone()), &calls)
}

/// The info-hashes of a `torrents_info` answer, sorted.
pub fn hashes(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hash"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

pub fn stats(env: &Env) -> Value {
    env.json(&["stats"])
}

#[test]
fn a_client_library_is_refused_before_login_and_with_a_wrong_password() {
    if !have_python_clients() {
        return;
    }
    let env = Env::with_piece_length("16K");
    let web = Web::start(&env, &config(&env, &env.path("data")), &[]);
    let before = replay::send(
        web.port,
        &format!(
            "GET /api/v2/app/version HTTP/1.1\nHost: 127.0.0.1:{}",
            web.port
        ),
        b"",
    );
    assert_eq!(before.status, 403, "{}", before.text());
    let r = qbt(&web, USER, "wrong", json!([["auth_log_in", {}]]));
    assert_eq!(r[0]["error"], "LoginFailed", "{r:?}");
    let r = run_ok(
        &web,
        json!([["app_version", {}], ["app_web_api_version", {}]]),
    );
    assert_eq!(r, vec![json!("v4.6.7"), json!("2.9.3")]);
    // Five failed logins in a row ban the address: even the right password gets 403.
    let login = |password: &str| {
        replay::send(
            web.port,
            &format!(
                "POST /api/v2/auth/login HTTP/1.1\nHost: 127.0.0.1:{}\n\
                 Content-Type: application/x-www-form-urlencoded",
                web.port
            ),
            format!("username={USER}&password={password}").as_bytes(),
        )
    };
    for _ in 0..5 {
        assert_eq!(login("guess").text(), "Fails.");
    }
    assert_eq!(login(PASSWORD).status, 403);
}

#[test]
fn http_on_a_public_address_needs_credentials_from_the_config_file() {
    let env = Env::with_piece_length("16K");
    let empty = env.path("empty.toml");
    write(&empty, b"");
    let err = env.fails(&[
        "--config",
        empty.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(err.contains("no username and password"), "{err}");
    // `cas config show` names the address and where it came from, never the password.
    let cfg = config(&env, &env.path("data"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[serve]\nhttp = \"8080\"\n");
    write(&cfg, text.as_bytes());
    let shown = env.ok(&["--config", cfg.to_str().unwrap(), "config", "show"]);
    assert!(shown.contains("serve.http = 8080"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}
