//! cas as a service: the config file and its errors, `cas config show`, SIGTERM,
//! SIGHUP, readiness told to systemd, the unit file, `cas status` figures.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A `cas serve` started with `args`, once it said it seeds; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Daemon {
    /// `cas GLOBAL... serve FLAGS...` with more environment variables.
    pub fn start(env: &Env, envs: &[(&str, &str)], global: &[&str], flags: &[&str]) -> Daemon {
        let mut cmd = env.cmd();
        cmd.envs(envs.iter().copied())
            .args(global)
            .arg("serve")
            .args(flags);
        Daemon::spawn(cmd)
    }

    /// Runs `cmd` (a `cas serve`, perhaps in a namespace) until it says it seeds.
    pub fn spawn(mut cmd: Command) -> Daemon {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("run cas serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("seeding "), "cas serve said {line:?}");
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        Daemon { child, port }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the process to exit, at most `within`; returns how long it took
    /// and whether it exited with status 0.
    pub fn wait_exit(&mut self, within: Duration) -> (Duration, bool) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (start.elapsed(), status.success());
            }
            assert!(
                start.elapsed() < within,
                "cas serve still runs after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_arg(path: &Path) -> [&str; 2] {
    ["--config", path.to_str().unwrap()]
}

#[test]
fn a_bad_config_file_is_an_error_naming_the_file_the_line_and_the_key() {
    let env = Env::with_piece_length("16K");
    let cfg = env.path("config.toml");
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\n\n[limits]\nupload-limt = \"1M\"\n",
    );
    let err = env.fails(&["--config", cfg.to_str().unwrap(), "serve"]);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("unknown key `limits.upload-limt`"), "{err}");
    // A value that does not parse: its key and line too.
    write(&cfg, b"[serve]\nread-timeout = \"soon\"\n");
    let err = env.fails(&["--config", cfg.to_str().unwrap(), "serve"]);
    assert!(
        err.contains("line 2") && err.contains("`serve.read-timeout`"),
        "{err}"
    );
    // A file named but missing.
    let err = env.fails(&["--config", env.path("nope.toml").to_str().unwrap(), "ls"]);
    assert!(err.contains("nope.toml: cannot read it"), "{err}");
}

#[test]
fn flags_override_the_config_file_and_config_show_says_where_each_value_came_from() {
    let env = Env::with_piece_length("16K");
    let cfg = env.path("config.toml");
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\ntracker = [\"http://127.0.0.1:9/announce\"]\n\n\
          [limits]\nupload-limit = \"3M\"\ndownload-limit = \"5M\"\n",
    );
    let c = config_arg(&cfg);
    let shown = env.ok(&[c[0], c[1], "config", "show"]);
    let line = |key: &str, text: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .to_string()
    };
    let file = cfg.to_str().unwrap();
    assert!(
        line("serve.listen", &shown).ends_with(&format!("# {file}:2")),
        "{shown}"
    );
    assert!(
        line("limits.upload-limit", &shown).contains("= 3M"),
        "{shown}"
    );
    assert!(line("serve.lsd", &shown).ends_with("# default"), "{shown}");
    // Running, with a flag over the file: what is in force, from where.
    let serve = Daemon::start(&env, &[], &c, &["--upload-limit", "1M"]);
    let shown = env.ok(&["config", "show"]);
    assert!(
        shown.contains(&format!("pid {}", serve.child.id())),
        "{shown}"
    );
    let up = line("limits.upload-limit", &shown);
    assert!(up.contains("= 1M") && up.ends_with("# flag"), "{shown}");
    let down = line("limits.download-limit", &shown);
    assert!(
        down.contains("= 5M") && down.ends_with(&format!("{file}:7")),
        "{shown}"
    );
    let status = env.json(&["status"]);
    assert_eq!(status["node"]["upload_limit"], 1 << 20, "{status}");
    assert_eq!(status["node"]["download_limit"], 5 << 20, "{status}");
}

/// Receives one datagram, within 10 s.
fn recv(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a message on NOTIFY_SOCKET");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serve_tells_systemd_ready_reloading_and_stopping_and_sighup_reloads_the_limits() {
    let env = Env::with_piece_length("16K");
    let cfg = env.path("config.toml");
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\n[limits]\nupload-limit = \"2M\"\n",
    );
    let notify = env.path("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let c = config_arg(&cfg);
    let mut serve = Daemon::start(
        &env,
        &[("NOTIFY_SOCKET", notify.to_str().unwrap())],
        &c,
        &[],
    );
    let ready = recv(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=seeding 0 torrents"), "{ready:?}");
    assert_eq!(env.json(&["status"])["node"]["upload_limit"], 2 << 20);
    // The file changes; SIGHUP reads it again.
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\n[limits]\n\nupload-limit = \"512K\"\n",
    );
    serve.signal(libc::SIGHUP);
    let reloading = recv(&sock);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(recv(&sock), "READY=1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.json(&["status"])["node"]["upload_limit"] != 512 << 10 {
        assert!(Instant::now() < deadline, "the new limit is not in force");
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown = env.ok(&["config", "show"]);
    let file = cfg.to_str().unwrap();
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("limits.upload-limit = 512K")
                && l.ends_with(&format!("{file}:5"))),
        "{shown}"
    );
    // A broken file on reload changes nothing, and the service stays up.
    write(&cfg, b"[limits]\nupload = 1\n");
    serve.signal(libc::SIGHUP);
    assert!(recv(&sock).starts_with("RELOADING=1"));
    assert_eq!(recv(&sock), "READY=1");
    assert_eq!(env.json(&["status"])["node"]["upload_limit"], 512 << 10);
    serve.signal(libc::SIGTERM);
    assert_eq!(recv(&sock), "STOPPING=1");
    let (_, ok) = serve.wait_exit(Duration::from_secs(10));
    assert!(ok);
}

#[test]
fn status_json_has_the_node_figures() {
    let env = Env::with_piece_length("16K");
    let _serve = Daemon::start(&env, &[], &[], &["--listen", "127.0.0.1:0"]);
    let s = env.json(&["status"]);
    let n = &s["node"];
    for k in [
        "upload_speed",
        "download_speed",
        "uploaded",
        "downloaded",
        "uploaded_all_time",
        "downloaded_all_time",
        "peers",
        "cpu_seconds",
        "memory_bytes",
        "store_free_bytes",
    ] {
        assert!(n[k].is_number(), "{k} missing: {s}");
    }
    assert!(n["memory_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
    assert!(n["store_free_bytes"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    if !have_tools("unit file", &["systemd-analyze"]) {
        return;
    }
    let env = Env::new();
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/systemd/cas.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/cas "), "{text}");
    // Checked with the binary just built where the README installs it.
    let here = env.path("cas.service");
    write(
        &here,
        text.replace("/usr/local/bin/cas", env!("CARGO_BIN_EXE_cas"))
            .as_bytes(),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", here.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Unknown keys are only warned about: no line may name the file.
    assert!(!err.contains("cas.service"), "{err}");
}

#[test]
fn sighup_reads_the_allow_list_again() {
    let env = Env::with_piece_length("16K");
    write(&env.path("d/f.bin"), &random_bytes(74, 200_000));
    env.import(&env.path("d"), "d");
    let t = env.path("f.torrent");
    env.ok(&["torrent", "d:f.bin", "-o", t.to_str().unwrap()]);
    let cfg = env.path("config.toml");
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\"]\n",
    );
    let notify = env.path("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let envs = [("NOTIFY_SOCKET", notify.to_str().unwrap())];
    let serve = Daemon::start(&env, &envs, &config_arg(&cfg), &[]);
    assert!(recv(&sock).starts_with("READY=1"));
    let r = crate::serve::lt_download_within(&t, &env.path("refused"), serve.port, 6);
    assert_eq!(
        r["have"], 0,
        "a peer outside the allow-list got pieces: {r}"
    );
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n",
    );
    serve.signal(libc::SIGHUP);
    assert!(recv(&sock).starts_with("RELOADING=1"));
    assert_eq!(recv(&sock), "READY=1");
    let r = crate::serve::lt_download(&t, &env.path("allowed"), serve.port);
    assert_eq!(
        r["seeding"], true,
        "a peer the new allow-list admits got nothing: {r}"
    );
    let shown = env.ok(&["config", "show"]);
    assert!(
        shown.contains("serve.allow = [10.0.0.0/8, 127.0.0.0/8]"),
        "{shown}"
    );
}

#[test]
fn the_readme_example_config_is_what_cas_reads() {
    let env = Env::new();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```toml block in README.md");
    let cfg = env.path("config.toml");
    write(&cfg, example.as_bytes());
    // Without CAS_STORE, which would stand above the file's `store`.
    let out = env
        .cmd()
        .env_remove("CAS_STORE")
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "config",
            "show",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let value = |key: &str| {
        json["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no {key}: {json}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(value("store"), "/var/lib/cas");
    assert_eq!(value("serve.listen"), "[::]:6881");
    assert_eq!(value("limits.upload-limit"), "10M");
    assert_eq!(value("limits.seed-time-limit"), "7d");
    assert_eq!(
        value("schedule.2"),
        "sat,sun 00:00-24:00 upload unlimited download -"
    );
}
