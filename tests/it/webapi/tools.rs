//! The request sequences of Sonarr, cross-seed and autobrr replayed from
//! `webapi/*.http`, and bad input: each answered as those tools expect, and bad
//! input changing nothing stored.

use std::collections::HashMap;

use serde_json::Value;

use super::replay;
use super::{config, stats, Web, PASSWORD, USER};
use crate::common::*;

#[test]
fn sonarr_cross_seed_and_autobrr_request_sequences_get_what_they_expect() {
    let served = Served::new(33);
    let env = &served.env;
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let web = Web::start(env, &config(env, &data), &[]);
    let magnet = env.ok(&["magnet", "src:big.bin"]).trim().to_string();
    let mut vars = HashMap::new();
    vars.insert("host", format!("127.0.0.1:{}", web.port));
    vars.insert("user", USER.to_string());
    vars.insert("password", PASSWORD.to_string());
    vars.insert("hash", info_hash_hex(&served.file_torrent));
    vars.insert("data", data.display().to_string());
    vars.insert("magnet_encoded", crate::qbittorrent::url_encode(&magnet));
    vars.insert("magnet", magnet);
    for fixture in ["sonarr.http", "cross-seed.http", "autobrr.http"] {
        replay::replay(web.port, fixture, vars.clone(), &served.file_torrent);
    }
}

/// The store's catalog and the web API's labels, to compare before and after:
/// each catalog and pack file (path, length, BLAKE3), the labels file, `cas stats`.
type Stored = (Vec<(String, u64, String)>, Option<Vec<u8>>, Value);

fn stored(env: &Env) -> Stored {
    let mut catalog = Vec::new();
    for d in ["torrents", "downloads", "pins", "refs", "trees", "packs"] {
        for e in std::fs::read_dir(env.store().join(d)).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let hash = blake3::hash(&bytes).to_hex().to_string();
            catalog.push((p.display().to_string(), bytes.len() as u64, hash));
        }
    }
    catalog.sort();
    let labels = std::fs::read(env.store().join("webapi.json")).ok();
    (catalog, labels, stats(env))
}

#[test]
fn bad_input_gets_qbittorrents_status_codes_and_changes_nothing() {
    let served = Served::new(44);
    let env = &served.env;
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let web = Web::start(env, &config(env, &data), &[]);
    let host = format!("Host: 127.0.0.1:{}", web.port);
    let login = replay::send(
        web.port,
        &format!("POST /api/v2/auth/login HTTP/1.1\n{host}\nContent-Type: application/x-www-form-urlencoded"),
        format!("username={USER}&password={PASSWORD}").as_bytes(),
    );
    assert_eq!(login.text(), "Ok.");
    let sid = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let before = stored(env);
    let post = |path: &str, kind: &str, body: &[u8]| {
        replay::send(
            web.port,
            &format!("POST /api/v2/{path} HTTP/1.1\n{host}\nCookie: {sid}\nContent-Type: {kind}"),
            body,
        )
        .status
    };
    let form = "application/x-www-form-urlencoded";
    let multipart = "multipart/form-data; boundary=XX";
    let part = |name: &str, file: Option<&str>, body: &[u8]| {
        let mut v = format!("--XX\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
        if let Some(f) = file {
            v.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        v.extend_from_slice(b"\r\n\r\n");
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n");
        v
    };
    let mut garbage = part("torrents", Some("bad.torrent"), b"d4:infod4:name3:abcee");
    garbage.extend_from_slice(b"--XX--\r\n");
    let mut truncated = part("torrents", Some("t.torrent"), &served.file_torrent);
    truncated.truncate(truncated.len() - 40);
    let mut outside = part("torrents", Some("t.torrent"), &served.file_torrent);
    outside.extend(part("savepath", None, b"/etc"));
    outside.extend(part("skip_checking", None, b"true"));
    outside.extend_from_slice(b"--XX--\r\n");
    assert_eq!(
        post("torrents/add", multipart, &truncated),
        400,
        "malformed multipart"
    );
    assert_eq!(
        post("torrents/add", multipart, &garbage),
        415,
        "a torrent that does not parse"
    );
    assert_eq!(
        post("torrents/add", multipart, &outside),
        400,
        "a savepath outside"
    );
    assert_eq!(
        post(
            "torrents/properties",
            form,
            b"hash=0123456789abcdef0123456789abcdef01234567"
        ),
        404
    );
    assert_eq!(post("torrents/files", form, b"hash=nothex"), 404);
    assert_eq!(
        post("torrents/delete", form, b"deleteFiles=true"),
        400,
        "no hashes"
    );
    assert_eq!(
        post("torrents/setCategory", form, b"hashes=all&category=none"),
        409
    );
    assert_eq!(post("torrents/nosuchcall", form, b""), 404);
    let get = replay::send(
        web.port,
        &format!("GET /api/v2/torrents/delete?hashes=all HTTP/1.1\n{host}\nCookie: {sid}"),
        b"",
    );
    assert_eq!(get.status, 405);
    let forged = replay::send(
        web.port,
        &format!("POST /api/v2/torrents/delete HTTP/1.1\n{host}\nCookie: {sid}\nOrigin: http://evil.example\nContent-Type: {form}"),
        b"hashes=all&deleteFiles=true",
    );
    assert_eq!(forged.status, 401, "a cross-site request");
    assert_eq!(stored(env), before);
}
