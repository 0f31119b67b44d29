//! `cas add`: torrents made by other tools, adopted with their data, seeded from one
//! copy to real clients.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::clients::{aria2_start, aria2_wait, Transmission};
use crate::common::*;
use crate::get::{contents, mktorrent, LtSeed};
use crate::serve::{lt_download, Serve};
use crate::tracker::Tracker;

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn lt_make(src: &Path, out: &Path, piece: u32, tracker: &str, private: bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/lt_make.py");
    run(Command::new("/usr/bin/python3")
        .arg(script)
        .arg(src)
        .arg(out)
        .arg(piece.to_string())
        .arg(tracker)
        .arg(if private { "1" } else { "0" }));
}

fn add(env: &Env, torrent: &Path, data: &Path) -> serde_json::Value {
    env.json(&[
        "add",
        torrent.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ])
}

fn physical(env: &Env) -> u64 {
    env.json(&["stats"])["physical_bytes"].as_u64().unwrap()
}

#[test]
fn one_file_in_three_torrents_costs_one_copy_and_three_clients_fetch_it() {
    let tools = [
        "mktorrent",
        "transmission-create",
        "transmission-daemon",
        "transmission-remote",
        "aria2c",
        "opentracker",
    ];
    if !have_tools(
        "one_file_in_three_torrents_costs_one_copy_and_three_clients_fetch_it",
        &tools,
    ) {
        return;
    }
    let env = Env::new();
    const SIZE: usize = 300 << 20;
    const PIECE: u32 = 256 << 10;
    let data = random_bytes(51, SIZE);
    // One file under three names (hard links: one copy on disk here too).
    let names = ["debian-12-amd64.iso", "netinst.iso", "mirror-bundle.iso"];
    write(&env.path("a").join(names[0]), &data);
    for (i, n) in names.iter().enumerate().skip(1) {
        let dir = env.path(["a", "b", "c"][i]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::hard_link(env.path("a").join(names[0]), dir.join(n)).unwrap();
    }
    let files: Vec<_> = names
        .iter()
        .zip(["a", "b", "c"])
        .map(|(n, d)| env.path(d).join(n))
        .collect();
    let port = Tracker::port();
    let url = Tracker::url(port);
    let t: Vec<_> = (1..=3)
        .map(|i| env.path(&format!("t{i}.torrent")))
        .collect();
    // Same piece length, different makers, names and private flags.
    run(Command::new("mktorrent")
        .args(["-l", "18", "-a", &url, "-o"])
        .arg(&t[0])
        .arg(&files[0]));
    run(Command::new("transmission-create")
        .args(["-p", "-s", "256", "-t", &url, "-o"])
        .arg(&t[1])
        .arg(&files[1]));
    lt_make(&files[2], &t[2], PIECE, &url, false);

    let mut ihs = Vec::new();
    for (torrent, file) in t.iter().zip(&files) {
        let r = add(&env, torrent, file);
        assert_eq!(r["complete"], true, "{r}");
        assert_eq!(r["bad_pieces"].as_array().unwrap().len(), 0, "{r}");
        ihs.push(r["info_hash"].as_str().unwrap().to_string());
    }
    // The first adoption stored the file; the others found every piece stored.
    let pieces = SIZE.div_ceil(PIECE as usize) as u64;
    let grown = physical(&env);
    assert!(
        grown <= SIZE as u64 + 3 * u64::from(PIECE) + SIZE as u64 / 100,
        "three torrents of one {SIZE}-byte file take {grown} bytes"
    );
    let stats = env.json(&["stats"]);
    let rows = stats["by_torrent"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{stats}");
    for row in rows {
        assert_eq!(row["pieces_held"].as_u64(), Some(pieces), "{row}");
        assert_eq!(row["unique_bytes"].as_u64(), Some(0), "{row}");
    }

    // Transmission (no loopback peers from trackers) and aria2 announce first; cas
    // hears of them from the torrents' trackers (the private one's too) and connects.
    let mut tracker = Tracker::start(&env, port, &[&ihs[0], &ihs[1], &ihs[2]]);
    let mut tm = Transmission::start(&env);
    tm.remote_ok(&["-a", t[0].to_str().unwrap()]);
    tracker.wait_for(&ihs[0], 0, 1, "transmission");
    let out2 = env.path("aria2");
    let aria2 = aria2_start(&env, &t[1], &out2);
    tracker.wait_for(&ihs[1], 0, 1, "aria2");
    let serve = Serve::start(&env);
    aria2_wait(&env, aria2);
    assert!(
        std::fs::read(out2.join(names[1])).unwrap() == data,
        "aria2's copy differs"
    );
    let save3 = env.path("lt");
    let r = lt_download(&t[2], &save3, serve.port);
    assert_eq!(r["seeding"], true, "{r}");
    assert!(
        std::fs::read(save3.join(names[2])).unwrap() == data,
        "libtorrent's copy differs"
    );
    // While serving, stats count what each torrent sent.
    let stats = env.json(&["stats"]);
    let row = stats["by_torrent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["info_hash"] == ihs[2].as_str())
        .unwrap_or_else(|| panic!("{stats}"))
        .clone();
    assert!(row["uploaded"].as_u64().unwrap() >= SIZE as u64, "{row}");
    assert!(row["ratio"].as_f64().unwrap() >= 1.0, "{row}");
    tm.wait_done(
        &ihs[0],
        &env.path("transmission-downloads").join(names[0]),
        &data,
    );
}

#[test]
fn a_multi_file_torrent_with_unaligned_files_is_adopted_and_exported_identical() {
    if !have_tools("a_multi_file_torrent_...", &["mktorrent"]) {
        return;
    }
    let env = Env::new();
    let src = env.path("album");
    let mut rng = rng(52);
    for (i, size) in [1u64, 70_000, 0, 300_001, 65_536, 999_999, 12]
        .iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..*size).map(|_| rng.gen()).collect();
        let sub = if i % 2 == 0 { "disc1" } else { "disc2/extra" };
        write(&src.join(sub).join(format!("track{i}.flac")), &bytes);
    }
    let t = env.path("album.torrent");
    mktorrent(16, &t, &src);
    // The data can be named by the torrent's directory or by the one holding it.
    let r = add(&env, &t, &env.path(""));
    assert_eq!(r["complete"], true, "{r}");
    let ih = r["info_hash"].as_str().unwrap();
    let out = env.path("out");
    env.ok(&["export", ih, out.to_str().unwrap()]);
    assert_eq!(contents(&out.join("album")), contents(&src));
    // Adopting again stores nothing new.
    let again = add(&env, &t, &src);
    assert_eq!(again["pieces_new"], 0, "{again}");
}

#[test]
fn corrupted_data_is_reported_and_the_bad_pieces_fetched_from_a_seeder() {
    if !have_tools("corrupted_data_...", &["mktorrent"]) {
        return;
    }
    let env = Env::new();
    let good = env.path("good");
    let data = random_bytes(53, (20 << 20) + 4321);
    write(&good.join("image.bin"), &data);
    let t = env.path("image.torrent");
    mktorrent(20, &t, &good.join("image.bin"));
    let mut bad = data.clone();
    for piece in [3usize, 7] {
        bad[(piece << 20) + 100] ^= 0xff;
    }
    write(&env.path("bad").join("image.bin"), &bad);
    let seed = LtSeed::start(&env, &t, &good);
    env.ok(&["init"]);
    let _serve = Serve::start(&env);
    let out = env.run(&[
        "add",
        t.to_str().unwrap(),
        "--data",
        env.path("bad").join("image.bin").to_str().unwrap(),
        "--peer",
        &seed.peer(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 pieces do not match the torrent: 3, 7"),
        "{stderr}"
    );
    assert!(stderr.contains("fetching them from peers"), "{stderr}");
    let ih = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    // The serving daemon fetches the two pieces; then the torrent exports whole.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = env.json(&["stats"]);
        let row = &stats["by_torrent"][0];
        if row["downloading"] == false && row["pieces_held"] == 21 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bad pieces never came: {stats}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = env.path("out");
    env.ok(&["export", &ih, dir.to_str().unwrap()]);
    assert!(std::fs::read(dir.join("image.bin")).unwrap() == data);
}

/// Writes random 1 MiB blocks at the given block numbers of `path`.
fn write_blocks(path: &Path, blocks: &[u64], seed: u64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut rng = rng(seed);
    let mut buf = vec![0u8; 1 << 20];
    for b in blocks {
        rng.fill(&mut buf[..]);
        f.seek(SeekFrom::Start(b << 20)).unwrap();
        f.write_all(&buf).unwrap();
    }
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn vm_images_sharing_most_blocks_cost_little_more_than_one_and_export_sparse() {
    if !have_tools("vm_images_...", &["mktorrent"]) {
        return;
    }
    let env = Env::new();
    const BLOCKS: u64 = 1024; // 1 GiB in 1 MiB blocks
    let mut rng = rng(54);
    // A base image: three blocks in four hold data, the rest is never written (zeros).
    let used: Vec<u64> = (0..BLOCKS).filter(|b| b % 4 != 3).collect();
    let images: Vec<_> = (0..3)
        .map(|i| env.path(&format!("vm{i}")).join(format!("disk{i}.raw")))
        .collect();
    for img in &images {
        std::fs::create_dir_all(img.parent().unwrap()).unwrap();
        std::fs::File::create(img)
            .unwrap()
            .set_len(BLOCKS << 20)
            .unwrap();
        write_blocks(img, &used, 55);
    }
    // Two derived images: 3% of their blocks changed each (some in the zero areas).
    for (i, img) in images.iter().enumerate().skip(1) {
        let changed: Vec<u64> = (0..BLOCKS * 3 / 100)
            .map(|_| rng.gen_range(0..BLOCKS))
            .collect();
        write_blocks(img, &changed, 60 + i as u64);
    }
    for (i, img) in images.iter().enumerate() {
        let t = env.path(&format!("disk{i}.torrent"));
        mktorrent(20, &t, img);
        let r = add(&env, &t, img);
        assert_eq!(r["complete"], true, "{r}");
    }
    let phys = physical(&env);
    let one = BLOCKS << 20;
    assert!(
        phys * 10 <= one * 11,
        "three 1 GiB images sharing most blocks take {phys} bytes"
    );
    // All-zero pieces are one chunk that takes no pack bytes.
    let chunks = env.json(&["stats"])["chunks"].as_u64().unwrap();
    let max_distinct = used.len() as u64 + 2 * (BLOCKS * 3 / 100) + 1;
    assert!(
        chunks <= max_distinct,
        "{chunks} chunks for at most {max_distinct} distinct pieces"
    );
    // Export keeps a sparse image sparse.
    let stats = env.json(&["stats"]);
    let ih = stats["by_torrent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "disk0.raw")
        .unwrap()["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.path("out");
    env.ok(&["export", &ih, out.to_str().unwrap()]);
    let got = out.join("disk0.raw");
    assert_eq!(b3(&got), b3(&images[0]));
    assert!(
        allocated(&got) <= allocated(&images[0]) + (1 << 20),
        "export allocated {} bytes, the source {}",
        allocated(&got),
        allocated(&images[0])
    );
}

#[test]
fn a_torrent_dropped_in_the_watch_directory_is_fetched_and_seeded() {
    if !have_tools(
        "a_torrent_dropped_in_the_watch_directory_...",
        &["mktorrent"],
    ) {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let data = random_bytes(56, (6 << 20) + 99);
    write(&src.join("release.tar"), &data);
    let t = env.path("release.torrent");
    mktorrent(18, &t, &src.join("release.tar"));
    let seed = LtSeed::start(&env, &t, &src);
    env.ok(&["init"]);
    let watch = env.path("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let _serve = Serve::start_with(
        &env,
        &["--watch", watch.to_str().unwrap(), "--peer", &seed.peer()],
    );
    std::fs::write(watch.join("junk.torrent"), b"d4:infoi3ee").unwrap();
    std::fs::copy(&t, watch.join("release.torrent")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ih = loop {
        let stats = env.json(&["stats"]);
        let row = &stats["by_torrent"][0];
        if row["downloading"] == false && row["pieces_held"] == row["pieces"] {
            break row["info_hash"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the dropped torrent was not fetched: {stats}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(watch.join("release.torrent.added").exists());
    assert!(watch.join("junk.torrent.invalid").exists());
    let out = env.path("out");
    env.ok(&["export", &ih, out.to_str().unwrap()]);
    assert!(std::fs::read(out.join("release.tar")).unwrap() == data);
}

/// A torrent of `files` (path, bytes), made by another store: a multi-file
/// directory torrent, and one single-file torrent per file (`REF:path`).
fn torrent_of(files: &[(&str, &[u8])]) -> (Env, std::path::PathBuf) {
    let maker = Env::with_piece_length("16K");
    let src = maker.path("src");
    for (p, b) in files {
        write(&src.join(p), b);
    }
    maker.import(&src, "pack");
    let t = maker.path("pack.torrent");
    maker.ok(&["torrent", "pack", "-o", t.to_str().unwrap()]);
    (maker, t)
}

/// Runs `cas add T --data DATA` on `env`, failing the test (not hanging it) if cas
/// has not finished in 20 s; returns (success, stderr).
fn add_within(env: &Env, torrent: &Path, data: &Path) -> (bool, String) {
    let mut child = env
        .cmd()
        .arg("add")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cas add --data {} hung (still running after 20 s)",
                data.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Nothing was stored: no chunk, no torrent, no download left behind.
fn stored_nothing(env: &Env) {
    let stats = env.json(&["stats"]);
    assert_eq!(stats["chunks"].as_u64(), Some(0), "{stats}");
    let downloads = std::fs::read_dir(env.store().join("downloads")).map_or(0, |d| d.count());
    assert_eq!(downloads, 0, "a download was left behind");
}

#[test]
fn a_symlink_in_the_data_directory_is_refused_not_followed() {
    let secret = random_bytes(61, 40_000);
    let (_maker, t) = torrent_of(&[("a.bin", b"public bytes\n"), ("b.bin", &secret)]);
    let env = Env::with_piece_length("16K");
    // Someone else's file, with the very bytes the torrent wants at b.bin.
    write(&env.path("elsewhere/secret.bin"), &secret);
    let data = env.path("data");
    write(&data.join("a.bin"), b"public bytes\n");
    std::os::unix::fs::symlink(env.path("elsewhere/secret.bin"), data.join("b.bin")).unwrap();
    let (ok, err) = add_within(&env, &t, &data);
    assert!(!ok, "cas add followed a symlink out of its data directory");
    assert!(
        err.contains(data.join("b.bin").to_str().unwrap()) && err.contains("symbolic link"),
        "{err}"
    );
    stored_nothing(&env);
}

#[test]
fn a_symlinked_subdirectory_of_the_data_is_refused_not_followed() {
    let secret = random_bytes(62, 40_000);
    let (_maker, t) = torrent_of(&[("a.bin", b"public bytes\n"), ("sub/b.bin", &secret)]);
    let env = Env::with_piece_length("16K");
    write(&env.path("elsewhere/b.bin"), &secret);
    let data = env.path("data");
    write(&data.join("a.bin"), b"public bytes\n");
    std::os::unix::fs::symlink(env.path("elsewhere"), data.join("sub")).unwrap();
    let (ok, err) = add_within(&env, &t, &data);
    assert!(
        !ok,
        "cas add followed a symlinked directory out of its data"
    );
    assert!(
        err.contains(data.join("sub").to_str().unwrap()) && err.contains("symbolic link"),
        "{err}"
    );
    stored_nothing(&env);
}

#[test]
fn a_fifo_in_the_data_or_as_the_data_is_refused_without_hanging() {
    let (maker, t) = torrent_of(&[("a.bin", b"public bytes\n"), ("b.bin", b"more\n")]);
    let env = Env::with_piece_length("16K");
    let data = env.path("data");
    write(&data.join("a.bin"), b"public bytes\n");
    mkfifo(&data.join("b.bin"));
    let (ok, err) = add_within(&env, &t, &data);
    assert!(!ok, "a FIFO was taken as a data file");
    assert!(
        err.contains(data.join("b.bin").to_str().unwrap()) && err.contains("FIFO"),
        "{err}"
    );
    stored_nothing(&env);

    // A single-file torrent whose --data is a FIFO.
    let single = env.path("a.torrent");
    maker.ok(&["torrent", "pack:a.bin", "-o", single.to_str().unwrap()]);
    let fifo = env.path("fifo");
    mkfifo(&fifo);
    let (ok, err) = add_within(&env, &single, &fifo);
    assert!(!ok, "a FIFO was taken as --data");
    assert!(
        err.contains(fifo.to_str().unwrap()) && err.contains("FIFO"),
        "{err}"
    );
    stored_nothing(&env);
}
