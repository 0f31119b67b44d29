//! Helpers: a temporary store, running the `cas` binary, making test files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};

/// A temporary directory with a store inside it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A new environment whose store uses `piece_length`.
    pub fn with_piece_length(piece_length: &str) -> Self {
        let env = Env::new();
        env.ok(&["init", "--piece-length", piece_length]);
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// A `cas` command on this store.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cas"));
        self.for_cas(&mut c);
        c
    }

    /// Points a cas command at this store. It logs only when the test run has
    /// `CAS_TEST_LOG` (which becomes its `CAS_LOG`).
    pub fn for_cas(&self, c: &mut Command) {
        c.env("CAS_STORE", self.store()).env_remove("CAS_LOG");
        if let Ok(log) = std::env::var("CAS_TEST_LOG") {
            c.env("CAS_LOG", log);
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run cas")
    }

    /// Runs and requires success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cas {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs and requires failure; returns standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "cas {args:?} succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    pub fn import(&self, dir: &Path, name: &str) -> serde_json::Value {
        self.json(&["import", dir.to_str().unwrap(), "--name", name])
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn random_range(rng: &mut impl Rng, lo: u64, hi: u64) -> u64 {
    rng.gen_range(lo..hi)
}

pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// BLAKE3 hex of a file.
pub fn b3(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// Every entry below `root` as (relative path, kind, bytes hash or link target, mode).
pub fn snapshot(root: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            let desc = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {mode:o}")
            } else {
                use std::os::unix::fs::MetadataExt;
                format!("file {mode:o} {} {} mtime {}", m.len(), b3(&p), m.mtime())
            };
            out.push((rel, desc));
        }
    }
    out.sort();
    out
}

/// True (and says why) when a test that needs network namespaces cannot run. In CI
/// (`CI` set) a missing capability fails the test instead: CI runs as root.
pub fn skip_without_root() -> bool {
    if is_root() {
        return false;
    }
    lacks_capability("network namespaces need root")
}

/// Whether the tests run in CI: `CI` set, and not to `false` or `0`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

/// For a test that cannot run here for want of `capability` (a sentence saying what
/// is missing): in CI a failure naming it; elsewhere a line saying why the test is
/// skipped, and `true`.
pub fn lacks_capability(capability: &str) -> bool {
    if in_ci() {
        panic!("missing capability: {capability} (CI must provide it; the test cannot skip there)");
    }
    eprintln!("SKIPPED: {capability} (CI runs as root with it)");
    true
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs python libtorrent's check of `torrent` against data under `save_path`.
pub fn lt_check(torrent: &Path, save_path: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/lt_check.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(torrent)
        .arg(save_path)
        .output()
        .expect("run /usr/bin/python3 (install python3-libtorrent: bash tests/run.sh does)");
    assert!(
        out.status.success(),
        "lt_check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lt_check prints JSON")
}

/// A small tree with the shapes import must keep: nested dirs, an empty dir, an
/// empty file, a symlink, modes, a duplicate file, sizes around piece boundaries.
pub fn sample_tree(root: &Path, piece: usize) {
    use std::os::unix::fs::PermissionsExt;
    write(&root.join("a.bin"), &random_bytes(1, 3 * piece + 17));
    write(&root.join("sub/copy.bin"), &random_bytes(1, 3 * piece + 17));
    write(&root.join("sub/exact.bin"), &random_bytes(2, 2 * piece));
    write(&root.join("sub/small.txt"), b"hello\n");
    write(&root.join("empty.txt"), b"");
    write(
        &root.join("zz/deep/er/last.bin"),
        &random_bytes(3, piece / 2),
    );
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("../a.bin", root.join("sub/link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::fs::set_permissions(
        root.join("sub/small.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(root.join("a.bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// True when every tool is on PATH. When one is missing the test is skipped with a
/// message, unless it runs in CI (`CI` set), where a missing tool is a failure.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: {} not found (bash tests/run.sh installs the Debian packages)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    false
}

fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// A child process, killed on drop; its output goes to a log file shown on failure.
pub struct Proc {
    pub child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let prog = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("run {prog}: {e}"));
        Proc { child, log }
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{what} exited ({status}):\n{}", self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        tail(&self.log)
    }
}

/// The end of a log file: what matters on failure.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let cut = text.len().saturating_sub(8000);
    let cut = (cut..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[cut..].to_string()
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on a loopback port.
pub fn wait_listening(port: u16, p: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        p.assert_running(what);
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port}:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `cas get TARGET` into `env`'s store, finding peers as `how` says (`--peer ADDR`,
/// `--tracker URL`), listening on loopback, within 60 s, exported to `out`.
pub fn get_export(env: &Env, target: &str, how: &[&str], out: &Path) -> serde_json::Value {
    let mut args = vec!["get", target];
    args.extend_from_slice(how);
    let out = out.to_str().unwrap();
    args.extend_from_slice(&[
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "60",
        "--export",
        out,
    ]);
    env.json(&args)
}

/// A store holding a tree `src` of three files (one over a piece, one of exact pieces,
/// one small), with its directory torrent, the big file's torrent and the exact
/// file's magnet: what the client tests move.
pub struct Served {
    pub env: Env,
    pub src: PathBuf,
    pub dir_torrent: Vec<u8>,
    pub file_torrent: Vec<u8>,
    pub magnet: String,
}

pub const SERVED_FILES: [&str; 3] = ["big.bin", "sub/exact.bin", "sub/small.txt"];

impl Served {
    pub fn new(seed: u64) -> Served {
        let env = Env::with_piece_length("16K");
        let src = env.path("src");
        write(&src.join("big.bin"), &random_bytes(seed, 700_000));
        write(
            &src.join("sub/exact.bin"),
            &random_bytes(seed + 1, 64 << 10),
        );
        write(&src.join("sub/small.txt"), b"a small file\n");
        env.import(&src, "src");
        let (d, f) = (env.path("dir.torrent"), env.path("file.torrent"));
        env.ok(&["torrent", "src", "-o", d.to_str().unwrap()]);
        env.ok(&["torrent", "src:big.bin", "-o", f.to_str().unwrap()]);
        let magnet = env.ok(&["magnet", "src:sub/exact.bin"]).trim().to_string();
        Served {
            dir_torrent: std::fs::read(&d).unwrap(),
            file_torrent: std::fs::read(&f).unwrap(),
            env,
            src,
            magnet,
        }
    }

    /// A file of the tree, as imported.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.src.join(rel)).unwrap()
    }

    /// The magnet's info-hash.
    pub fn magnet_ih(&self) -> String {
        self.magnet.split("btih:").nth(1).unwrap()[..40].to_string()
    }

    /// The files of a directory `out` that a fetched tree was exported to match the tree's.
    pub fn assert_tree(&self, out: &Path, what: &str) {
        for f in SERVED_FILES {
            assert_eq!(
                std::fs::read(out.join(f)).unwrap(),
                self.read(f),
                "{what}: {f}"
            );
        }
    }

    /// The one file a magnet's fetch exported to `out` is the exact file.
    pub fn assert_magnet_file(&self, out: &Path, what: &str) {
        assert_eq!(
            std::fs::read(only_file(out)).unwrap(),
            self.read("sub/exact.bin"),
            "{what}"
        );
    }
}

/// The one entry of directory `dir` (a single-file torrent's download, named by its
/// content's BLAKE3).
pub fn only_file(dir: &Path) -> PathBuf {
    let got: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(got.len(), 1, "one file in {}: {got:?}", dir.display());
    got[0].clone()
}

/// A .torrent's info-hash, in hex.
pub fn info_hash_hex(torrent: &[u8]) -> String {
    hex::encode(crate::liar::info_hash_of(torrent))
}
