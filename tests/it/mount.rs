//! `cas mount`: the store as a real FUSE mount (needs root and /dev/fuse; CI has both).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Whether mounting is possible here; if not, the test skips, or fails in CI.
fn can_mount() -> bool {
    if !is_root() {
        return !lacks_capability("mounting needs root");
    }
    if !Path::new("/dev/fuse").exists() {
        return !lacks_capability("mounting needs /dev/fuse");
    }
    true
}

/// A running `cas mount`, stopped (and unmounted) on drop.
struct Mounted {
    child: Child,
    at: PathBuf,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Mounted {
    fn start(env: &Env, at: &Path) -> Mounted {
        Mounted::start_with(env, at, &[])
    }

    fn start_with(env: &Env, at: &Path, args: &[&str]) -> Mounted {
        Mounted::launch(env, at, args, Stdio::inherit())
    }

    fn launch(env: &Env, at: &Path, args: &[&str], stderr: Stdio) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let mut child = env
            .cmd()
            .arg("mount")
            .arg(at)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut seeding, mut mounted) = (String::new(), String::new());
        out.read_line(&mut seeding).unwrap();
        out.read_line(&mut mounted).unwrap();
        assert!(seeding.starts_with("seeding "), "{seeding}");
        assert!(mounted.starts_with("mounted "), "{mounted}");
        let m = Mounted {
            child,
            at: at.to_path_buf(),
            _stdout: out,
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
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .stderr(Stdio::null())
            .status();
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
            .stderr(Stdio::null())
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

#[test]
fn torrents_show_under_their_own_names_without_pad_files() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("64K");
    let src = env.path("photos");
    sample_tree(&src, 64 << 10);
    let imported = env.import(&src, "photos");
    let dir_ih = imported["directory_torrent"]["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let file = &imported["files"][0];
    let file_ih = file["info_hash"].as_str().unwrap().to_string();
    let mp = env.path("mnt");
    let _m = Mounted::start(&env, &mp);
    let torrents = mp.join("torrents");
    let listed = within(move || {
        let mut l: Vec<String> = std::fs::read_dir(torrents)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        l.sort();
        l
    });
    assert!(
        listed.contains(&dir_ih) && listed.contains(&file_ih),
        "{listed:?}"
    );
    // The directory torrent: every file under the torrent's name, bytes as imported,
    // and nothing else (its BEP 47 pad files are not shown).
    let root = mp.join("torrents").join(&dir_ih).join("photos");
    let mut want: Vec<(String, Vec<u8>)> = Vec::new();
    for f in imported["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap().to_string();
        want.push((path.clone(), std::fs::read(src.join(&path)).unwrap()));
    }
    want.sort();
    let got = within(move || {
        let mut got = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    got.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        got.sort();
        got
    });
    assert_eq!(
        got.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        want.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(
        got == want,
        "a file read through torrents/ differs from its source"
    );
}

/// A 64 MiB file in 1 MiB pieces, served by cas node A; B knows only its tree's manifest.
fn lazy_pair() -> (Env, Env, super::serve::Serve, Vec<u8>, serde_json::Value) {
    let a = Env::with_piece_length("1M");
    let src = a.path("vm");
    let data = random_bytes(31, 64 << 20);
    write(&src.join("disk.img"), &data);
    let imported = a.import(&src, "vm");
    let serve = super::serve::Serve::start(&a);
    let b = Env::with_piece_length("1M");
    let peer = format!("127.0.0.1:{}", serve.port);
    let magnet = imported["tree_torrent"]["magnet"].as_str().unwrap();
    let out = b.ok(&["get", "--lazy", magnet, "--peer", &peer, "--name", "vm"]);
    assert!(out.contains("manifest fetched"), "{out}");
    (a, b, serve, data, imported)
}

fn stored_chunks(env: &Env) -> u64 {
    env.json(&["stats"])["chunks"].as_u64().unwrap()
}

#[test]
fn a_lazy_tree_fetches_only_the_pieces_a_read_needs() {
    if !can_mount() {
        return;
    }
    let (_a, b, serve, data, _) = lazy_pair();
    // Only the manifest is stored: one chunk.
    let before = stored_chunks(&b);
    // No peer given: the mount asks the ones `cas get --lazy` used.
    let _serving = serve;
    let mp = b.path("mnt");
    let m = Mounted::start(&b, &mp);
    // The whole tree shows at once; the lazy file's torrent is not in the session.
    let f = mp.join("refs/vm/disk.img");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 64 << 20);
    let active = || {
        let s = b.json(&["status"]);
        s["node"]["active_torrents"]
            .as_u64()
            .unwrap_or_else(|| panic!("{s}"))
    };
    let inactive = active();
    let last = *data.last().unwrap();
    let g = f.clone();
    let byte = within(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut h = std::fs::File::open(g).unwrap();
        h.seek(SeekFrom::End(-1)).unwrap();
        let mut b = [0u8; 1];
        h.read_exact(&mut b).unwrap();
        b[0]
    });
    assert_eq!(byte, last);
    assert_eq!(active(), inactive + 1, "the read added the lazy torrent");
    assert!(m.stop().success());
    let pulled = stored_chunks(&b) - before;
    assert!(
        (1..=4).contains(&pulled),
        "reading the last byte pulled {pulled} of 64 pieces"
    );
    // Read whole, the file is its source, and it stays in the store.
    let m = Mounted::start(&b, &mp);
    let g = f.clone();
    let got = within(move || std::fs::read(g).unwrap());
    assert!(
        got == data,
        "the file read through the mount differs from its source"
    );
    assert!(m.stop().success());
    assert_eq!(stored_chunks(&b), before + 64);
}

#[test]
fn a_lazy_read_with_no_peer_fails_with_eio_in_time() {
    if !can_mount() {
        return;
    }
    let (_a, b, serve, _, _) = lazy_pair();
    drop(serve);
    let mp = b.path("mnt");
    let _m = Mounted::start_with(&b, &mp, &["--read-timeout", "3"]);
    let f = mp.join("refs/vm/disk.img");
    let start = Instant::now();
    let err = within(move || std::fs::read(f)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "the read failed after {took:?}, the limit being 3 s"
    );
}

#[test]
fn a_mount_left_by_a_killed_process_is_cleaned_up_by_the_next() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("64K");
    let src = env.path("d");
    write(&src.join("f.txt"), b"still here\n");
    env.import(&src, "d");
    let mp = env.path("mnt");
    let mut m = Mounted::start(&env, &mp);
    m.child.kill().unwrap();
    m.child.wait().unwrap();
    let err = std::fs::read_dir(&mp).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    std::mem::forget(m);
    let mut m = Mounted::launch(&env, &mp, &[], Stdio::piped());
    let f = mp.join("refs/d/f.txt");
    assert_eq!(within(move || std::fs::read(f).unwrap()), b"still here\n");
    let mut stderr = String::new();
    let mut pipe = m.child.stderr.take().unwrap();
    let status = m.stop();
    std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
    assert!(
        stderr.contains("a mount left by a process that died"),
        "{stderr}"
    );
    assert!(status.success(), "{stderr}");
}

#[test]
fn colliding_files_read_through_the_mount_as_themselves() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("512K");
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sha1-collisions");
    let names = [
        "shattered-1.pdf",
        "shattered-2.pdf",
        "sha-mbles-1.bin",
        "sha-mbles-2.bin",
    ];
    for n in names {
        std::fs::create_dir_all(env.path("pair")).unwrap();
        std::fs::copy(testdata.join(n), env.path("pair").join(n)).unwrap();
    }
    env.import(&env.path("pair"), "pair");
    let mp = env.path("mnt");
    let _m = Mounted::start(&env, &mp);
    for n in names {
        let f = mp.join("refs/pair").join(n);
        let got = within(move || std::fs::read(f).unwrap());
        assert!(
            got == std::fs::read(testdata.join(n)).unwrap(),
            "{n} through the mount"
        );
    }
}

#[test]
fn a_tree_imported_through_the_mounting_daemon_shows_up_in_the_mount() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("64K");
    write(&env.path("first/a.txt"), b"first\n");
    env.import(&env.path("first"), "first");
    let mp = env.path("mnt");
    let _m = Mounted::start(&env, &mp);
    // `cas mount` is `cas serve --mount`: this import runs inside it.
    let late = random_bytes(41, 300_000);
    write(&env.path("late/b.bin"), &late);
    env.import(&env.path("late"), "late");
    let f = mp.join("refs/late/b.bin");
    assert!(within(move || std::fs::read(f).unwrap()) == late);
}

#[test]
fn with_direct_io_files_read_back_as_their_source() {
    if !can_mount() {
        return;
    }
    let env = Env::with_piece_length("64K");
    let data = random_bytes(42, (3 << 20) + 4321);
    write(&env.path("d/big.bin"), &data);
    env.import(&env.path("d"), "d");
    let mp = env.path("mnt");
    let _m = Mounted::start_with(&env, &mp, &["--direct-io"]);
    let f = mp.join("refs/d/big.bin");
    assert!(within(move || std::fs::read(f).unwrap()) == data);
    // Reads that start and end anywhere, across pieces.
    let f = mp.join("refs/d/big.bin");
    let part = within(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut h = std::fs::File::open(f).unwrap();
        h.seek(SeekFrom::Start(65_000)).unwrap();
        let mut b = vec![0u8; 200_000];
        h.read_exact(&mut b).unwrap();
        b
    });
    assert!(part == data[65_000..265_000]);
    // And mapped (programs run from the mount map their files).
    let f = mp.join("refs/d/big.bin");
    let mapped = within(move || {
        use std::os::fd::AsRawFd;
        let h = std::fs::File::open(f).unwrap();
        let len = h.metadata().unwrap().len() as usize;
        // SAFETY: a fresh read-only shared mapping of an open file, unmapped before return.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                h.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
            let v = std::slice::from_raw_parts(p as *const u8, len).to_vec();
            libc::munmap(p, len);
            v
        }
    });
    assert!(mapped == data);
}
