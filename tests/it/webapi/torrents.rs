//! Torrents through python qbittorrent-api: added by .torrent and by magnet and
//! fetched, listed with filters, labelled, paused, stopped at a share limit,
//! labels kept over a restart; cross-seed's add of data on disk; delete with and
//! without files; `content_path` under the mount.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::{config, hashes, have_python_clients, qbt, run_ok, stats, Web, PASSWORD, USER};
use crate::common::*;
use crate::get::mktorrent;
use crate::serve::Serve;

/// A directory of two files and two torrents of them that differ only in their
/// info-hash (mktorrent's source string): what cross-seed finds on two trackers.
fn show(env: &Env, dir: &str, seed: u64) -> (PathBuf, PathBuf, PathBuf) {
    let data = env.path(dir);
    write(&data.join("Show/e1.mkv"), &random_bytes(seed, 300_000));
    write(&data.join("Show/e2.mkv"), &random_bytes(seed + 1, 120_000));
    let (a, b) = (
        env.path(&format!("{dir}-a.torrent")),
        env.path(&format!("{dir}-b.torrent")),
    );
    mktorrent(15, &a, &data.join("Show"));
    let o = Command::new("mktorrent")
        .args(["-l", "15", "-s", "other-tracker", "-o"])
        .arg(&b)
        .arg(data.join("Show"))
        .output()
        .unwrap();
    assert!(o.status.success());
    (data, a, b)
}

#[test]
fn torrents_added_by_file_and_magnet_are_fetched_listed_and_labelled_and_keep_their_labels() {
    if !have_python_clients() {
        return;
    }
    let seeder = Served::new(71);
    let serve = Serve::start(&seeder.env);
    let env = Env::with_piece_length("16K");
    let cfg = config(&env, &env.path("data"));
    let peer = format!("127.0.0.1:{}", serve.port);
    let web = Web::start(&env, &cfg, &["--peer", &peer]);
    let file = seeder.env.path("file.torrent");
    let (fih, mih) = (info_hash_hex(&seeder.file_torrent), seeder.magnet_ih());
    let up = json!(["stalledUP", "uploading"]);
    let calls = json!([
        ["torrents_create_category", {"name": "tv", "save_path": ""}],
        ["torrents_add", {"torrent_files": [file], "category": "tv", "tags": "a,b"}],
        ["torrents_add", {"urls": seeder.magnet}],
        ["wait", {"hash": fih, "states": up, "seconds": 60}],
        ["wait", {"hash": mih, "states": up, "seconds": 60}],
        ["torrents_info", {}],
        ["torrents_info", {"category": "tv"}],
        ["torrents_info", {"tag": "b"}],
        ["torrents_info", {"filter": "completed"}],
        ["torrents_info", {"filter": "downloading"}],
        ["torrents_categories", {}],
        ["torrents_tags", {}],
        ["torrents_pause", {"torrent_hashes": fih}],
        ["torrents_info", {"filter": "paused"}],
        ["torrents_resume", {"torrent_hashes": fih}],
        ["wait", {"hash": fih, "states": up, "seconds": 20}],
        ["torrents_set_share_limits", {"ratio_limit": 0, "seeding_time_limit": -1, "torrent_hashes": mih}],
        ["wait", {"hash": mih, "states": ["pausedUP"], "seconds": 20}],
        ["torrents_files", {"torrent_hash": fih}],
        ["torrents_properties", {"torrent_hash": fih}],
        ["sync_maindata", {"rid": 0}],
        ["torrents_info", {"sort": "size", "reverse": true}],
        ["torrents_info", {"sort": "size", "limit": 1, "offset": 1}],
    ]);
    let r = run_ok(&web, calls.clone());
    let mut both = vec![fih.clone(), mih.clone()];
    both.sort();
    assert_eq!(hashes(&r[5]), both);
    assert_eq!(hashes(&r[6]), vec![fih.clone()]);
    assert_eq!(hashes(&r[7]), vec![fih.clone()]);
    assert_eq!(hashes(&r[8]), both);
    assert_eq!(hashes(&r[9]), Vec::<String>::new());
    assert!(r[10].get("tv").is_some(), "{}", r[10]);
    assert_eq!(r[11], json!(["a", "b"]));
    assert_eq!(hashes(&r[13]), vec![fih.clone()]);
    assert_eq!(r[13][0]["state"], "pausedUP");
    assert_eq!(r[18][0]["size"], 700_000);
    assert_eq!(r[19]["total_size"], 700_000);
    assert_eq!(r[20]["full_update"], true);
    let sizes = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["size"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(sizes(&r[21]), vec![700_000, 64 << 10]);
    assert_eq!(sizes(&r[22]), vec![700_000]);
    // The bytes came over the wire, each once.
    assert_eq!(stats(&env)["content_bytes"], 700_000 + (64 << 10));
    // sync/maindata: the next answer, asked with the rid just given, holds only
    // what changed.
    let r = run_ok(
        &web,
        json!([["sync_delta", {"call": ["torrents_create_tags", {"tags": "new"}]}]]),
    );
    let (first, next) = (&r[0][0], &r[0][1]);
    assert!(next["rid"].as_i64() > first["rid"].as_i64(), "{next}");
    assert_eq!(next.get("full_update"), None, "{next}");
    assert_eq!(next["tags"], json!(["new"]), "{next}");
    assert_eq!(first["torrents"].as_object().unwrap().len(), 2);
    // A tree's manifest by magnet is fetched as `cas get` fetches it: its files too,
    // the tree kept under a ref (its id), each byte stored once.
    let manifest = seeder
        .env
        .ok(&["magnet", "--manifest", "src"])
        .trim()
        .to_string();
    run_ok(&web, json!([["torrents_add", {"urls": manifest}]]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stats(&env)["refs"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tree never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let s = stats(&env);
    assert_eq!(s["logical_bytes"], 700_000 + (64 << 10) + 13, "{s}");
    assert_eq!(s["content_bytes"], 700_000 + (64 << 10) + 13, "{s}");
    // Labels, pauses and share limits survive a restart.
    web.stop();
    let web = Web::start(&env, &cfg, &["--peer", &peer]);
    let r = run_ok(
        &web,
        json!([
            ["torrents_categories", {}],
            ["torrents_info", {"tag": "a"}],
            ["wait", {"hash": mih, "states": ["pausedUP"], "seconds": 20}],
        ]),
    );
    assert!(r[0].get("tv").is_some());
    assert_eq!(hashes(&r[1]), vec![fih]);
}

#[test]
fn a_cross_seed_add_of_data_on_disk_costs_no_disk_and_a_savepath_outside_is_refused() {
    if !have_python_clients() || !have_tools("webapi cross-seed", &["mktorrent"]) {
        return;
    }
    let env = Env::with_piece_length("16K");
    let (data, a, b) = show(&env, "data", 5);
    let web = Web::start(&env, &config(&env, &data), &[]);
    let (aih, bih) = (
        info_hash_hex(&std::fs::read(&a).unwrap()),
        info_hash_hex(&std::fs::read(&b).unwrap()),
    );
    assert_ne!(aih, bih);
    let add = |t: &Path| json!(["torrents_add", {"torrent_files": [t], "save_path": data, "is_skip_checking": true, "category": "cross-seed", "tags": "cross-seed"}]);
    let up = json!(["stalledUP", "uploading"]);
    run_ok(
        &web,
        json!([add(&a), ["wait", {"hash": aih, "states": up, "seconds": 30}]]),
    );
    let first = stats(&env);
    assert!(
        first["physical_bytes"].as_u64().unwrap() > 420_000,
        "{first}"
    );
    let r = run_ok(
        &web,
        json!([add(&b), ["wait", {"hash": bih, "states": up, "seconds": 30}], ["torrents_info", {"category": "cross-seed"}]]),
    );
    let mut both = vec![aih.clone(), bih.clone()];
    both.sort();
    assert_eq!(hashes(&r[2]), both);
    assert!(r[2]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["progress"] == 1.0));
    let second = stats(&env);
    assert_eq!(
        second["physical_bytes"], first["physical_bytes"],
        "{second}"
    );
    assert_eq!(second["content_bytes"], 420_000);
    // A save path the config does not allow: refused, nothing changed.
    let labels = std::fs::read(env.store().join("webapi.json")).unwrap();
    let outside = env.path("elsewhere");
    let (_, c, _) = show(&env, "elsewhere", 9);
    let r = qbt(
        &web,
        USER,
        PASSWORD,
        json!([["torrents_add", {"torrent_files": [c], "save_path": outside, "is_skip_checking": true}], ["torrents_info", {}]]),
    );
    assert_eq!(r[0]["error"], "InvalidRequest400Error", "{r:?}");
    assert_eq!(hashes(&r[1]["ok"]), both);
    assert_eq!(stats(&env)["physical_bytes"], first["physical_bytes"]);
    assert_eq!(
        std::fs::read(env.store().join("webapi.json")).unwrap(),
        labels
    );
}

#[test]
fn delete_without_files_keeps_the_data_and_with_files_lets_gc_free_it() {
    if !have_python_clients() || !have_tools("webapi delete", &["mktorrent"]) {
        return;
    }
    let env = Env::with_piece_length("16K");
    let (one, a, _) = show(&env, "one", 11);
    let (two, b, _) = show(&env, "two", 21);
    let cfg = config(&env, &env.path(""));
    let web = Web::start(&env, &cfg, &[]);
    let (aih, bih) = (
        info_hash_hex(&std::fs::read(&a).unwrap()),
        info_hash_hex(&std::fs::read(&b).unwrap()),
    );
    let up = json!(["stalledUP", "uploading"]);
    run_ok(
        &web,
        json!([
            ["torrents_add", {"torrent_files": [a], "save_path": one, "is_skip_checking": true}],
            ["torrents_add", {"torrent_files": [b], "save_path": two, "is_skip_checking": true}],
            ["wait", {"hash": aih, "states": up, "seconds": 30}],
            ["wait", {"hash": bih, "states": up, "seconds": 30}],
        ]),
    );
    assert_eq!(stats(&env)["content_bytes"], 2 * 420_000);
    let r = run_ok(
        &web,
        json!([
            ["torrents_delete", {"torrent_hashes": aih}],
            ["torrents_delete", {"torrent_hashes": bih, "delete_files": true}],
            ["torrents_info", {}],
        ]),
    );
    assert_eq!(r[2], json!([]));
    web.stop();
    env.ok(&["gc"]);
    // The torrent deleted with its files is gone; the other one's data stays.
    assert_eq!(stats(&env)["content_bytes"], 420_000);
    let web = Web::start(&env, &cfg, &[]);
    assert_eq!(run_ok(&web, json!([["torrents_info", {}]]))[0], json!([]));
}

#[test]
fn content_path_is_under_the_mount_and_reads_back_the_torrents_bytes() {
    if !have_python_clients() {
        return;
    }
    if !is_root() && lacks_capability("mounting needs root") {
        return;
    }
    if !Path::new("/dev/fuse").exists() && lacks_capability("mounting needs /dev/fuse") {
        return;
    }
    let served = Served::new(88);
    let env = &served.env;
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let web = Web::start(
        env,
        &config(env, &env.path("data")),
        &["--mount", mnt.to_str().unwrap()],
    );
    let fih = info_hash_hex(&served.file_torrent);
    let r = run_ok(
        &web,
        json!([["app_preferences", {}], ["torrents_info", {"torrent_hashes": fih}]]),
    );
    assert_eq!(r[0]["save_path"], mnt.to_str().unwrap());
    let t = &r[1][0];
    let (save, content) = (
        t["save_path"].as_str().unwrap(),
        t["content_path"].as_str().unwrap(),
    );
    assert_ne!(
        save, content,
        "Sonarr takes content_path == save_path for an error"
    );
    assert!(content.starts_with(save), "{content} under {save}");
    // What an *arr tool copies from is the torrent's bytes.
    assert_eq!(std::fs::read(content).unwrap(), served.read("big.bin"));
    web.stop();
}
