//! `cas get`: fetching from real peers into the store.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{free_port, Serve};

/// A libtorrent seeder on loopback, killed on drop.
pub struct LtSeed {
    child: Child,
    port: u16,
    status: std::path::PathBuf,
}

impl LtSeed {
    /// Seeds `torrent` from `save` (the directory holding the torrent's name).
    pub fn start(env: &Env, torrent: &Path, save: &Path) -> LtSeed {
        LtSeed::start_with(env, torrent, save, 0, "{}")
    }

    /// Seeds with uploads capped at `rate` bytes a second (0: no cap).
    fn start_limited(env: &Env, torrent: &Path, save: &Path, rate: u64) -> LtSeed {
        LtSeed::start_with(env, torrent, save, rate, "{}")
    }

    /// Seeds with more libtorrent settings (a JSON object, as `LT_SETTINGS`).
    pub fn start_with(env: &Env, torrent: &Path, save: &Path, rate: u64, settings: &str) -> LtSeed {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/lt_seed.py");
        let port = free_port();
        let status = env.path(&format!("lt-seed-{port}.json"));
        let child = Command::new("/usr/bin/python3")
            .env("LT_SETTINGS", settings)
            .arg(script)
            .arg(torrent)
            .arg(save)
            .arg(port.to_string())
            .arg(&status)
            .arg(rate.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("run /usr/bin/python3");
        let seed = LtSeed {
            child,
            port,
            status,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = seed.status();
            if s["seeding"] == true {
                return seed;
            }
            assert!(
                Instant::now() < deadline,
                "libtorrent did not start seeding: {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status(&self) -> serde_json::Value {
        std::fs::read(&self.status)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn peer(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Payload bytes sent, once the counter has settled: the same in two status
    /// files in a row (libtorrent's count may lag the bytes the peer received).
    fn uploaded(&self) -> u64 {
        let written = || {
            std::fs::metadata(&self.status)
                .and_then(|m| m.modified())
                .ok()
        };
        let count = || self.status()["uploaded"].as_u64();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut at, mut last) = (written(), count());
        loop {
            assert!(
                Instant::now() < deadline,
                "libtorrent's upload count did not settle: {}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(50));
            let now = written();
            if now == at {
                continue;
            }
            let c = count();
            if let Some(n) = c.filter(|_| c == last) {
                return n;
            }
            (at, last) = (now, c);
        }
    }
}

impl Drop for LtSeed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Paths, kinds, modes, sizes and hashes of a tree; not mtimes, which torrents do
/// not carry.
pub fn contents(root: &Path) -> Vec<(String, String)> {
    snapshot(root)
        .into_iter()
        .map(|(p, d)| (p, d.split(" mtime ").next().unwrap_or_default().to_string()))
        .collect()
}

pub fn mktorrent(piece_log2: u32, out: &Path, src: &Path) {
    let o = Command::new("mktorrent")
        .args(["-l", &piece_log2.to_string(), "-o"])
        .arg(out)
        .arg(src)
        .output()
        .expect("run mktorrent (apt install mktorrent)");
    assert!(
        o.status.success(),
        "mktorrent: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn get(env: &Env, target: &str, peer: &str, export: &Path) -> serde_json::Value {
    env.json(&[
        "get",
        target,
        "--peer",
        peer,
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "90",
        "--export",
        export.to_str().unwrap(),
    ])
}

#[test]
fn get_fetches_an_unaligned_multi_file_torrent_that_libtorrent_seeds() {
    let env = Env::with_piece_length("64K");
    let src = env.path("seed/bundle");
    write(&src.join("a.bin"), &random_bytes(1, 100_001));
    write(&src.join("sub/b.bin"), &random_bytes(2, (1 << 20) + 17));
    write(&src.join("sub/deeper/c.txt"), b"short file\n");
    write(&src.join("z.bin"), &random_bytes(3, 65_536 * 3));
    let t = env.path("bundle.torrent");
    mktorrent(15, &t, &src);
    let seed = LtSeed::start(&env, &t, &env.path("seed"));
    let out = env.path("out");
    let r = get(&env, t.to_str().unwrap(), &seed.peer(), &out);
    assert_eq!(r["bytes_in_store"], 0, "{r}");
    assert_eq!(contents(&out.join("bundle")), contents(&src));
    // The store seeds it now: what it holds is the torrent's bytes, read back.
    let again = env.path("again");
    env.ok(&[
        "get",
        t.to_str().unwrap(),
        "--export",
        again.to_str().unwrap(),
        "--timeout",
        "30",
    ]);
    assert_eq!(contents(&again.join("bundle")), contents(&src));
    // A fetched torrent is kept by gc until `cas rm` says otherwise.
    drop(seed);
    env.ok(&["gc"]);
    let kept = env.path("kept");
    env.ok(&[
        "get",
        t.to_str().unwrap(),
        "--export",
        kept.to_str().unwrap(),
        "--timeout",
        "30",
    ]);
    assert_eq!(contents(&kept.join("bundle")), contents(&src));
    let ih = r["torrents"][0].as_str().unwrap();
    env.ok(&["rm", ih]);
    env.ok(&["gc"]);
    assert_eq!(env.json(&["stats"])["chunks"], 0);
}

#[test]
fn get_takes_from_the_wire_only_the_pieces_the_store_lacks() {
    let env = Env::with_piece_length("64K");
    let image = random_bytes(4, 4 << 20);
    write(&env.path("seed/disk.img"), &image);
    // The first half, piece-aligned, is already stored (under another name).
    write(&env.path("half/old.img"), &image[..2 << 20]);
    env.import(&env.path("half"), "half");
    let t = env.path("disk.torrent");
    mktorrent(16, &t, &env.path("seed/disk.img"));
    let seed = LtSeed::start(&env, &t, &env.path("seed"));
    let out = env.path("out");
    let r = get(&env, t.to_str().unwrap(), &seed.peer(), &out);
    assert_eq!(r["bytes_in_store"], 2 << 20, "{r}");
    assert_eq!(r["bytes_from_wire"], 2 << 20, "{r}");
    let sent = seed.uploaded();
    assert!(
        (2 << 20..=(2 << 20) + (64 << 10)).contains(&sent),
        "libtorrent sent {sent} bytes for the 2 MiB the store lacked"
    );
    assert_eq!(std::fs::read(out.join("disk.img")).unwrap(), image);
}

/// `cas get` of ref `name`'s manifest magnet from `a`, served, into a fresh store (no
/// `cas init`: get makes the store, like import): that store, get's report, the export.
fn get_tree_from(a: &Env, name: &str) -> (Env, serde_json::Value, std::path::PathBuf) {
    let magnet = a.ok(&["magnet", "--manifest", name]);
    let serve = Serve::start(a);
    let b = Env::new();
    let out = b.path("out");
    let r = get(
        &b,
        magnet.trim(),
        &format!("127.0.0.1:{}", serve.port),
        &out,
    );
    (b, r, out)
}

#[test]
fn get_fetches_a_whole_tree_from_another_cas_by_its_manifest_magnet() {
    let a = Env::with_piece_length("16K");
    let src = a.path("photos");
    sample_tree(&src, 16 << 10);
    write(&src.join("raw/big.bin"), &random_bytes(5, (1 << 20) + 5));
    let imported = a.import(&src, "photos");
    let listing = a.ok(&["ls", "photos"]);
    let (b, r, out) = get_tree_from(&a, "photos");
    assert_eq!(r["tree"], imported["tree"], "{r}");
    assert_eq!(snapshot(&out), snapshot(&src));
    // The tree is known now: `ls` lists it by id, like on the node that made it.
    assert_eq!(b.ok(&["ls", imported["tree"].as_str().unwrap()]), listing);
}

/// The file torrents of a tree are added several at a time: each must come back as
/// itself (librqbit, left to number torrents, gives two added at once the same id and
/// answers the second with the first).
#[test]
fn get_fetches_a_tree_of_many_files_added_at_once() {
    let a = Env::with_piece_length("16K");
    let src = a.path("many");
    for i in 0..24u64 {
        let len = 1000 + (i as usize) * 7919;
        write(
            &src.join(format!("d{}/f{i:02}.bin", i % 3)),
            &random_bytes(100 + i, len),
        );
    }
    let imported = a.import(&src, "many");
    let (_b, r, out) = get_tree_from(&a, "many");
    assert_eq!(r["tree"], imported["tree"], "{r}");
    assert_eq!(snapshot(&out), snapshot(&src));
}

#[test]
fn get_refuses_a_torrent_whose_paths_escape() {
    let env = Env::new();
    env.ok(&["init"]);
    let t = env.path("evil.torrent");
    let info = "d5:filesld6:lengthi5e4:pathl2:..4:evileee4:name3:top12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    write(&t, format!("d4:info{info}e").as_bytes());
    let err = env.fails(&["get", t.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains("evil.torrent") && err.contains("escape"),
        "{err}"
    );
    assert!(!env.path("evil").exists());
}

#[test]
fn get_through_a_running_serve_seeds_what_it_fetched() {
    let a = Env::with_piece_length("16K");
    let data = random_bytes(6, 700_001);
    write(&a.path("src/f.bin"), &data);
    a.import(&a.path("src/"), "src");
    let t = a.path("f.torrent");
    a.ok(&["torrent", "src:f.bin", "-o", t.to_str().unwrap()]);
    let serve_a = Serve::start(&a);
    let b = Env::with_piece_length("16K");
    let serve_b = Serve::start(&b);
    let r = b.json(&[
        "get",
        t.to_str().unwrap(),
        "--peer",
        &format!("127.0.0.1:{}", serve_a.port),
        "--timeout",
        "60",
    ]);
    assert_eq!(r["bytes_from_wire"], 700_001, "{r}");
    drop(serve_a);
    // B seeds it now, to anyone.
    let got = b.path("got");
    let lt = crate::serve::lt_download(&t, &got, serve_b.port);
    assert_eq!(lt["seeding"], true, "libtorrent did not complete: {lt}");
    let name = blake3::hash(&data).to_hex().to_string();
    assert_eq!(std::fs::read(got.join(name)).unwrap(), data);
}

/// When the store's index (sled, flushed at each commit) was last written.
fn index_written(env: &Env) -> Option<std::time::SystemTime> {
    std::fs::read_dir(env.store().join("index"))
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

/// Bytes in the store's pack files.
fn pack_bytes(env: &Env) -> u64 {
    std::fs::read_dir(env.store().join("packs"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn an_interrupted_get_resumes_without_fetching_again_what_it_stored() {
    let env = Env::with_piece_length("64K");
    let data = random_bytes(10, 8 << 20);
    write(&env.path("seed/big.img"), &data);
    let t = env.path("big.torrent");
    mktorrent(16, &t, &env.path("seed/big.img"));
    let seed = LtSeed::start_limited(&env, &t, &env.path("seed"), 2 << 20);
    let mut first = env
        .cmd()
        .args([
            "get",
            t.to_str().unwrap(),
            "--peer",
            &seed.peer(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pack_bytes(&env) < 2 << 20 {
        assert!(Instant::now() < deadline, "the first get stored nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Received pieces are committed a few times a second. The second write of the
    // index from now began after the first ended, so it carries every piece above;
    // a get that ended committed all it stored.
    let mut writes = 0;
    let mut seen = index_written(&env);
    while writes < 2 && first.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the first get committed nothing");
        std::thread::sleep(Duration::from_millis(20));
        let now = index_written(&env);
        if now != seen {
            (writes, seen) = (writes + 1, now);
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let out = env.path("out");
    let r = get(&env, t.to_str().unwrap(), &seed.peer(), &out);
    let (kept, fetched) = (
        r["bytes_in_store"].as_u64().unwrap(),
        r["bytes_from_wire"].as_u64().unwrap(),
    );
    assert!(
        kept >= 1 << 20,
        "the second get found only {kept} bytes stored: {r}"
    );
    assert_eq!(kept + fetched, 8 << 20, "{r}");
    assert_eq!(std::fs::read(out.join("big.img")).unwrap(), data);
}

/// A peer on loopback that resets the first connection made to it (as qBittorrent and
/// Transmission do in ordinary use) and passes every later one through to `to`.
fn resetting_proxy(to: u16) -> u16 {
    use std::net::{TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(c) = c else { return };
            if n == 0 {
                // SO_LINGER 0: the close is a reset.
                let _ = socket2_reset(&c);
                drop(c);
                continue;
            }
            let Ok(up) = TcpStream::connect(("127.0.0.1", to)) else {
                return;
            };
            let (mut a, mut b) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            let (mut a, mut b) = (up, c);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Sets SO_LINGER to zero, so that closing the socket sends a reset.
fn socket2_reset(s: &std::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn get_of_a_magnet_whose_only_peer_resets_the_first_connection_asks_again() {
    let a = Env::new();
    let data = random_bytes(91, 3 << 20);
    write(&a.path("src/f.bin"), &data);
    a.import(&a.path("src"), "src");
    let magnet = a.ok(&["magnet", "src:f.bin"]);
    let serve = Serve::start(&a);
    let proxy = resetting_proxy(serve.port);
    let b = Env::new();
    let out = b.path("out");
    // In plaintext: under the default, the reset encrypted attempt would be followed
    // by a plaintext one at once, and the asking again under test never be needed.
    let peer = format!("127.0.0.1:{proxy}");
    let r = b.json(&[
        "get",
        magnet.trim(),
        "--peer",
        &peer,
        "--encryption",
        "off",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "90",
        "--export",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["torrents"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(std::fs::read(only_file(&out)).unwrap(), data);
}

/// `cas get` of a magnet whose only seeder is libtorrent: the metadata, then the
/// pieces, byte-identical, in each of three runs.
#[test]
fn get_fetches_a_magnet_from_libtorrent_as_the_only_seeder() {
    let s = Served::new(74);
    let t = s.env.path("exact.torrent");
    s.env
        .ok(&["torrent", "src:sub/exact.bin", "-o", t.to_str().unwrap()]);
    let name = blake3::hash(&s.read("sub/exact.bin")).to_hex().to_string();
    write(&s.env.path("lt-seed").join(&name), &s.read("sub/exact.bin"));
    let seed = LtSeed::start(&s.env, &t, &s.env.path("lt-seed"));
    for run in 0..3 {
        let leech = Env::with_piece_length("16K");
        let out = leech.path("out");
        get_export(&leech, &s.magnet, &["--peer", &seed.peer()], &out);
        s.assert_magnet_file(
            &out,
            &format!("run {run}: cas get of the magnet from libtorrent"),
        );
        leech.ok(&["fsck"]);
    }
}
