//! Helpers: a temporary store, running the `cas` binary, making test files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        c.env("CAS_STORE", self.store()).env_remove("CAS_LOG");
        c
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
