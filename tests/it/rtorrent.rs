//! rtorrent (Debian's 0.9.8, as a daemon with a config of its own and its default
//! settings otherwise; DHT and PeX off) and cas through opentracker alone, both ways:
//! rtorrent downloads a file torrent, a directory torrent and a magnet from `cas serve`,
//! then `cas get` fetches a .torrent and a magnet from rtorrent as the only seeder.
//! Each download by rtorrent runs several times, each in a fresh rtorrent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{free_port, Serve};
use crate::tracker::{with_announce, with_tracker, Tracker};

const RUNS: usize = 3;

/// An rtorrent daemon loading every .torrent of its watch folder; killed on drop.
pub struct Rtorrent {
    proc: Proc,
    dir: PathBuf,
}

impl Rtorrent {
    /// Starts rtorrent on 127.0.0.2 (rtorrent drops the peers a tracker gives at its own
    /// address, and cas is at 127.0.0.1) with `torrents` (file name, bytes) to load.
    fn start(env: &Env, name: &str, torrents: &[(&str, &[u8])], downloads: &Path) -> Rtorrent {
        Rtorrent::start_with(env, name, torrents, downloads, "")
    }

    /// [`Rtorrent::start`] with more lines of rtorrent.rc.
    pub fn start_with(
        env: &Env,
        name: &str,
        torrents: &[(&str, &[u8])],
        downloads: &Path,
        rc_lines: &str,
    ) -> Rtorrent {
        let dir = env.path(name);
        for d in ["session", "watch", "done"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::create_dir_all(downloads).unwrap();
        for (file, bytes) in torrents {
            std::fs::write(dir.join("watch").join(file), bytes).unwrap();
        }
        let port = free_port();
        let rc = dir.join("rtorrent.rc");
        std::fs::write(
            &rc,
            format!(
                "directory.default.set = {downloads}\n\
                 session.path.set = {d}/session\n\
                 network.port_range.set = {port}-{port}\n\
                 network.port_random.set = no\n\
                 network.bind_address.set = 127.0.0.2\n\
                 dht.mode.set = disable\n\
                 protocol.pex.set = no\n\
                 trackers.use_udp.set = no\n\
                 system.daemon.set = true\n\
                 method.set_key = event.download.finished, casdone, \
                 \"execute.throw=touch,(cat,{d}/done/,(d.hash))\"\n\
                 schedule2 = watch_start, 1, 1, \"load.start={d}/watch/*.torrent\"\n\
                 {rc_lines}\n",
                downloads = downloads.display(),
                d = dir.display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new("rtorrent");
        cmd.arg("-n")
            .arg("-o")
            .arg(format!("import={}", rc.display()));
        let proc = Proc::spawn(cmd, dir.join("rtorrent.log"));
        Rtorrent { proc, dir }
    }

    /// Waits until rtorrent says it finished downloading `info_hash`.
    pub fn wait_done(&mut self, info_hash: &str, within: Duration) {
        let done = self.dir.join("done").join(info_hash.to_uppercase());
        let deadline = Instant::now() + within;
        while !done.exists() {
            self.proc.assert_running("rtorrent");
            assert!(
                Instant::now() < deadline,
                "rtorrent did not finish {info_hash} within {within:?}:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A magnet as rtorrent loads it from its watch folder.
fn magnet_file(magnet: &str) -> Vec<u8> {
    format!("d10:magnet-uri{}:{magnet}e", magnet.len()).into_bytes()
}

#[test]
fn rtorrent_downloads_from_cas_serve_and_cas_gets_from_rtorrent_through_opentracker() {
    if !have_tools("rtorrent", &["rtorrent", "opentracker"]) {
        return;
    }
    let s = Served::new(64);
    let env = &s.env;
    let (d, dir_t, file_t) = (env.path("dir.torrent"), &s.dir_torrent, &s.file_torrent);
    let magnet = s.magnet.clone();
    let (dir_ih, file_ih) = (info_hash_hex(dir_t), info_hash_hex(file_t));
    let magnet_ih = s.magnet_ih();
    let port = Tracker::port();
    let url = Tracker::url(port);
    let mut tracker = Tracker::start(env, port, &[&dir_ih, &file_ih, &magnet_ih]);
    let tracked_magnet = with_tracker(&magnet, &url);
    let serve = Serve::start_with(env, &["--tracker", &url]);
    tracker.wait_for(&file_ih, 1, 0, "cas serve");
    let (dir_tr, file_tr) = (with_announce(dir_t, &url), with_announce(file_t, &url));
    let magnet_tr = magnet_file(&tracked_magnet);
    let torrents: [(&str, &[u8]); 3] = [
        ("dir.torrent", &dir_tr),
        ("file.torrent", &file_tr),
        ("magnet.torrent", &magnet_tr),
    ];
    let read = |p: &str| s.read(p);
    // A file torrent is named by its content's BLAKE3.
    let big_name = blake3::hash(&s.read("big.bin")).to_hex().to_string();
    let mut seeder = None;
    for run in 0..RUNS {
        let downloads = env.path(&format!("rt-downloads-{run}"));
        let mut rt = Rtorrent::start(env, &format!("rt-{run}"), &torrents, &downloads);
        let within = Duration::from_secs(60);
        rt.wait_done(&file_ih, within);
        assert_eq!(
            std::fs::read(downloads.join(&big_name)).unwrap(),
            read("big.bin")
        );
        rt.wait_done(&dir_ih, within);
        s.assert_tree(
            &downloads.join("src"),
            &format!("run {run}: directory torrent"),
        );
        rt.wait_done(&magnet_ih, within);
        let exact: Vec<PathBuf> = std::fs::read_dir(&downloads)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.is_file() && p.extension().is_none() && p.file_name() != Some(big_name.as_ref())
            })
            .collect();
        assert_eq!(exact.len(), 1, "run {run}: {exact:?}");
        assert_eq!(std::fs::read(&exact[0]).unwrap(), read("sub/exact.bin"));
        eprintln!(
            "rtorrent from cas serve, run {}/{RUNS}: file, directory and magnet",
            run + 1
        );
        seeder = Some(rt);
    }
    // The last rtorrent keeps seeding; cas serve goes.
    drop(serve);
    let _seeder = seeder;
    let leech = Env::with_piece_length("16K");
    let out = leech.path("out");
    get_export(&leech, d.to_str().unwrap(), &["--tracker", &url], &out);
    s.assert_tree(
        &out.join("src"),
        "cas get of the directory torrent from rtorrent",
    );
    let out = leech.path("out-magnet");
    get_export(&leech, &tracked_magnet, &["--tracker", &url], &out);
    s.assert_magnet_file(&out, "cas get of the magnet from rtorrent");
    leech.ok(&["fsck"]);
}
