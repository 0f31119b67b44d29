//! Rate limits held against a real libtorrent downloader, a schedule switching limits
//! at its boundary (on a clock the test sets), share limits stopping a torrent.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{lt_download, lt_download_within};
use crate::service::Daemon;

/// A store holding one file of `mib` MiB and its .torrent.
fn one_file(mib: usize) -> (Env, std::path::PathBuf) {
    let env = Env::with_piece_length("64K");
    write(&env.path("d/big.bin"), &random_bytes(81, mib << 20));
    env.import(&env.path("d"), "d");
    let t = env.path("big.torrent");
    env.ok(&["torrent", "d:big.bin", "-o", t.to_str().unwrap()]);
    (env, t)
}

/// MiB a second libtorrent downloads from a `cas serve` run with `flags`, over 10 s.
fn rate_with(flags: &[&str]) -> f64 {
    let (env, t) = one_file(32);
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(flags);
    let serve = Daemon::start(&env, &[], &[], &all);
    let r = lt_download_within(&t, &env.path("got"), serve.port, 10);
    let got = r["downloaded"].as_f64().unwrap();
    let rate = got / 10.0 / (1 << 20) as f64;
    eprintln!("{flags:?}: libtorrent downloaded {got} bytes in 10 s: {rate:.2} MiB/s");
    rate
}

#[test]
fn a_1_mib_upload_limit_holds_a_libtorrent_download_to_1_mib_a_second() {
    let rate = rate_with(&["--upload-limit", "1M"]);
    assert!((0.8..=1.2).contains(&rate), "{rate:.2} MiB/s");
}

#[test]
fn a_per_torrent_upload_limit_holds_too() {
    let rate = rate_with(&["--torrent-upload-limit", "1M"]);
    assert!((0.8..=1.2).contains(&rate), "{rate:.2} MiB/s");
}

#[test]
fn a_schedule_switches_the_limits_at_its_boundary() {
    let env = Env::with_piece_length("16K");
    let cfg = env.path("config.toml");
    write(
        &cfg,
        b"[serve]\nlisten = \"127.0.0.1:0\"\n[limits]\nupload-limit = \"1M\"\n\n\
          [[schedule]]\ndays = \"mon-fri\"\nfrom = \"08:00\"\nto = \"18:00\"\nupload-limit = \"100K\"\n",
    );
    // Monday 2026-12-07, 07:59:55 UTC: the period starts 5 s after cas serve does.
    let clock = [("CAS_CLOCK", "1796630395"), ("TZ", "UTC")];
    let started = Instant::now();
    let _serve = Daemon::start(&env, &clock, &["--config", cfg.to_str().unwrap()], &[]);
    let node = || env.json(&["status"])["node"].clone();
    let before = node();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "too slow to see 07:59"
    );
    assert_eq!(before["upload_limit"], 1 << 20, "{before}");
    assert!(before["schedule"].is_null(), "{before}");
    let after = loop {
        let n = node();
        if n["upload_limit"] != 1 << 20 {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no switch: {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let at = started.elapsed();
    assert_eq!(after["upload_limit"], 100 << 10, "{after}");
    assert_eq!(after["schedule"], 1, "{after}");
    assert!(
        at >= Duration::from_secs(4),
        "switched after {at:?}, before 08:00"
    );
}

#[test]
fn a_torrent_stops_seeding_at_its_ratio_limit() {
    let (env, t) = one_file(2);
    let serve = Daemon::start(
        &env,
        &[],
        &[],
        &["--listen", "127.0.0.1:0", "--ratio-limit", "1"],
    );
    let r = lt_download(&t, &env.path("got1"), serve.port);
    assert_eq!(r["seeding"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.json(&["status"])["node"]["stopped_by_share_limits"] != 1 {
        assert!(Instant::now() < deadline, "not stopped at ratio 1");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A second downloader gets nothing.
    let r = lt_download_within(&t, &env.path("got2"), serve.port, 6);
    assert_eq!(r["have"], 0, "{r}");
}

#[test]
fn sighup_changes_the_limit_of_torrents_already_running() {
    let (env, t) = one_file(32);
    let cfg = env.path("config.toml");
    let config = |rate: &str| {
        let text = format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\n[limits]\ntorrent-upload-limit = \"{rate}\"\n"
        );
        write(&cfg, text.as_bytes());
    };
    config("8M");
    let serve = Daemon::start(&env, &[], &["--config", cfg.to_str().unwrap()], &[]);
    config("1M");
    serve.signal(libc::SIGHUP);
    // The reload, then the next tick of the limits task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .ok(&["config", "show"])
        .contains("limits.torrent-upload-limit = 1M")
    {
        assert!(Instant::now() < deadline, "not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let r = lt_download_within(&t, &env.path("got"), serve.port, 10);
    let rate = r["downloaded"].as_f64().unwrap() / 10.0 / (1 << 20) as f64;
    eprintln!("after SIGHUP to 1M: {rate:.2} MiB/s");
    assert!((0.8..=1.2).contains(&rate), "{rate:.2} MiB/s");
}
