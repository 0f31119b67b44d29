//! `cas mount`: the store as a real FUSE mount (needs root and /dev/fuse; CI has both).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn can_mount() -> bool {
    if !is_root() || !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: mounting needs root and /dev/fuse (CI runs as root with both)");
        return false;
    }
    true
}

/// A running `cas mount`, stopped (and unmounted) on drop.
struct Mounted {
    child: Child,
    at: PathBuf,
}

impl Mounted {
    fn start(env: &Env, at: &Path) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let mut child = env
            .cmd()
            .arg("mount")
            .arg(at)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = [0u8; 7];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut line)
            .unwrap();
        assert_eq!(&line, b"mounted");
        let m = Mounted {
            child,
            at: at.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !at.join("refs").exists() {
            assert!(Instant::now() < deadline, "the mount did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// Runs `f` on a thread and gives up after 30 s, so that a hung mount fails the test.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a read through the mount hung")
}

#[test]
fn a_mounted_tree_reads_back_as_its_source() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("64K");
    let src = env.path("photos");
    sample_tree(&src, 64 << 10);
    write(&src.join("raw/big.bin"), &random_bytes(11, (5 << 20) + 123));
    let imported = env.import(&src, "photos");
    let mp = env.path("mnt");
    let m = Mounted::start(&env, &mp);
    let (a, b) = (mp.join("refs/photos"), src.clone());
    let (got, want) = within(move || (snapshot(&a), snapshot(&b)));
    assert_eq!(got, want);
    let tree = imported["tree"].as_str().unwrap().to_string();
    let by_id = mp.join("trees").join(&tree);
    assert_eq!(within(move || snapshot(&by_id)), snapshot(&src));
    let blob = mp.join("blobs").join(b3(&src.join("raw/big.bin")));
    assert_eq!(
        within(move || std::fs::read(blob).unwrap()),
        std::fs::read(src.join("raw/big.bin")).unwrap()
    );
    // Read-only.
    let err = std::fs::write(mp.join("refs/photos/new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(m.stop().success());
    assert!(
        !mp.join("refs").exists(),
        "still mounted after cas mount stopped"
    );
}

#[test]
fn a_flipped_bit_in_a_pack_reads_as_an_io_error() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("64K");
    let src = env.path("d");
    let data = random_bytes(12, 300_000);
    write(&src.join("f.bin"), &data);
    env.import(&src, "d");
    let pack = std::fs::read_dir(env.store().join("packs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&pack).unwrap();
    let last = bytes.len() - 1000;
    bytes[last] ^= 0x10;
    std::fs::write(&pack, bytes).unwrap();
    let mp = env.path("mnt");
    let _m = Mounted::start(&env, &mp);
    let f = mp.join("refs/d/f.bin");
    let err = within(move || std::fs::read(f)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}
