//! Bad input gets a clear error naming the file, and nothing stored is lost.

use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use crate::common::*;

/// A store with one good import, to check that failures lose nothing.
fn with_good_import() -> (Env, Vec<u8>) {
    let env = Env::with_piece_length("16K");
    let bytes = random_bytes(41, 100_000);
    write(&env.path("good/keep.bin"), &bytes);
    env.import(&env.path("good"), "good");
    (env, bytes)
}

fn still_good(env: &Env, bytes: &[u8]) {
    let out = env.cmd().args(["cat", "good:keep.bin"]).output().unwrap();
    assert!(out.stdout == bytes, "earlier import still reads back");
    assert_eq!(env.run(&["fsck"]).status.code(), Some(0));
}

#[test]
fn special_files_and_non_utf8_names_are_refused_by_name() {
    let (env, bytes) = with_good_import();
    let dir = env.path("fifo-dir");
    write(&dir.join("ok.txt"), b"fine");
    let fifo = dir.join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let err = env.fails(&["import", dir.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "{}: a named pipe cannot be stored",
            fifo.display()
        )),
        "{err}"
    );

    let dir = env.path("latin1");
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    write(&dir.join(name), b"x");
    let err = env.fails(&["import", dir.to_str().unwrap()]);
    assert!(
        err.contains("caf\u{fffd}.txt: file name is not UTF-8"),
        "{err}"
    );

    let err = env.fails(&["import", env.path("nonexistent").to_str().unwrap()]);
    assert!(
        err.contains("nonexistent") && err.contains("No such file"),
        "{err}"
    );
    still_good(&env, &bytes);
}

#[test]
fn unreadable_file_is_named() {
    let (env, bytes) = with_good_import();
    let dir = env.path("locked");
    write(&dir.join("secret"), b"top secret");
    std::fs::set_permissions(
        dir.join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let out = if is_root() {
        // root reads any file: run cas as nobody, on a store nobody may write.
        Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(env.dir.path())
            .status()
            .unwrap();
        std::fs::set_permissions(
            dir.join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_cas"),
            "import",
        ])
        .arg(&dir)
        .env("CAS_STORE", env.store());
        c.output().unwrap()
    } else {
        env.cmd().arg("import").arg(&dir).output().unwrap()
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: open: Permission denied",
            dir.join("secret").display()
        )),
        "{err}"
    );
    still_good(&env, &bytes);
}

#[test]
fn file_that_changes_while_read_is_refused() {
    let (env, bytes) = with_good_import();
    let dir = env.path("busy");
    let path = dir.join("growing.log");
    write(&path, &random_bytes(42, 32 << 20));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"more log\n").unwrap();
                std::thread::yield_now();
            }
        })
    };
    let err = env.fails(&["import", dir.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        err.contains(&format!(
            "{}: file changed while being read",
            path.display()
        )),
        "{err}"
    );
    still_good(&env, &bytes);
}

#[test]
fn second_process_is_told_who_holds_the_store() {
    let (env, _) = with_good_import();
    let held = cas::Store::open(&env.store(), None).unwrap();
    let err = env.fails(&["ls"]);
    assert!(err.contains("is in use by pid"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(held);
    env.ok(&["ls"]);
}

#[test]
fn full_disk_fails_cleanly_and_keeps_what_was_stored() {
    if !is_root() && lacks_capability("mounting a small tmpfs to fill needs root") {
        return;
    }
    let env = Env::new();
    let mnt = env.path("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let store = mnt.join("store");
    let cas = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cas"))
            .args(args)
            .env("CAS_STORE", &store)
            .output()
            .unwrap()
    };
    let small = random_bytes(43, 300_000);
    write(&env.path("small-src/a"), &small);
    assert!(cas(&["import", env.path("small-src").to_str().unwrap()])
        .status
        .success());
    let big = env.path("big-src");
    write(&big.join("huge.bin"), &random_bytes(44, 16 << 20));
    let out = cas(&["import", big.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(&format!("importing {}", big.join("huge.bin").display())),
        "{err}"
    );
    // What was stored before is intact.
    let out = cas(&["cat", "small-src:a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == small);
    let out = cas(&["fsck"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
