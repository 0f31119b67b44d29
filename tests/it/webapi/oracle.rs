//! The same requests to Debian's qbittorrent-nox (4.5) and to `cas serve --http`:
//! the same status codes, and the JSON keys qBittorrent gives are among cas's (for
//! preferences, the other way round: cas invents no preference). Where 4.5 and 4.6
//! differ, or cas chose otherwise on purpose, the request is left out (a
//! `torrents/delete` without `deleteFiles`: qBittorrent 400, cas 200, as Sonarr
//! needs).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use super::replay::{send, Answer};
use super::{config, Web, PASSWORD, USER};
use crate::common::*;
use crate::serve::free_port;

/// A qbittorrent-nox with a login (PBKDF2, as its config stores it), queueing off.
fn qbittorrent(env: &Env) -> (Proc, u16) {
    let web = free_port();
    let profile = env.path("qbt-profile");
    let conf = profile.join("qBittorrent/config/qBittorrent.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    let hash = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import base64, hashlib, os, sys\n\
             salt = os.urandom(16)\n\
             key = hashlib.pbkdf2_hmac('sha512', sys.argv[1].encode(), salt, 100000, 64)\n\
             print(base64.b64encode(salt).decode() + ':' + base64.b64encode(key).decode())",
            PASSWORD,
        ])
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap();
    std::fs::write(
        &conf,
        format!(
            "[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\Port={}\n\
             Session\\DHTEnabled=false\nSession\\LSDEnabled=false\nSession\\PeXEnabled=false\n\
             Session\\QueueingSystemEnabled=false\nSession\\DefaultSavePath={}\n\n\
             [Preferences]\nWebUI\\Port={web}\nWebUI\\Address=127.0.0.1\n\
             WebUI\\LocalHostAuth=true\nWebUI\\Username={USER}\n\
             WebUI\\Password_PBKDF2=\"@ByteArray({})\"\nConnection\\UPnP=false\n",
            free_port(),
            env.path("qbt-downloads").display(),
            hash.trim()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("qbittorrent-nox");
    cmd.arg(format!("--profile={}", profile.display()));
    let mut proc = Proc::spawn(cmd, env.path("qbt.log"));
    wait_listening(web, &mut proc, "qbittorrent-nox's Web API");
    (proc, web)
}

/// The keys of a JSON object, or of an array's first element; of the first
/// value for `categories` (an object of objects).
fn keys(a: &Answer, nested: bool) -> BTreeSet<String> {
    let Ok(v) = serde_json::from_slice::<Value>(&a.body) else {
        return BTreeSet::new();
    };
    let o = match (&v, nested) {
        (Value::Array(x), _) => x.first().cloned().unwrap_or(Value::Null),
        (Value::Object(m), true) => m.values().next().cloned().unwrap_or(Value::Null),
        _ => v,
    };
    o.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// One request to both, by a session on each: the status codes must agree, and
/// the keys as said above.
struct Both {
    cas: (u16, String),
    qbt: (u16, String),
}

impl Both {
    fn login(port: u16) -> String {
        let a = send(
            port,
            &format!("POST /api/v2/auth/login HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/x-www-form-urlencoded"),
            format!("username={USER}&password={PASSWORD}").as_bytes(),
        );
        assert_eq!(a.text(), "Ok.", "login on {port}");
        let c = a.header("set-cookie").expect("a session cookie");
        c.split(';').next().unwrap().to_string()
    }

    fn call(port: u16, sid: &str, method: &str, path: &str, kind: &str, body: &[u8]) -> Answer {
        let cookie = match sid {
            "" => String::new(),
            s => format!("\nCookie: {s}"),
        };
        send(
            port,
            &format!("{method} /api/v2/{path} HTTP/1.1\nHost: 127.0.0.1:{port}{cookie}\nContent-Type: {kind}"),
            body,
        )
    }

    fn check(&self, method: &str, path: &str, kind: &str, body: &[u8], json: Keys) {
        let c = Both::call(self.cas.0, &self.cas.1, method, path, kind, body);
        let q = Both::call(self.qbt.0, &self.qbt.1, method, path, kind, body);
        assert_eq!(
            c.status,
            q.status,
            "{method} {path}: cas {:?}, qBittorrent {:?}",
            c.text(),
            q.text()
        );
        let nested = path.starts_with("torrents/categories");
        let (ck, qk) = (keys(&c, nested), keys(&q, nested));
        let missing: Vec<&String> = match json {
            Keys::None => return,
            Keys::OursAmongTheirs => ck.difference(&qk).collect(),
            Keys::TheirsAmongOurs => qk.difference(&ck).collect(),
        };
        let missing: Vec<&String> = missing
            .into_iter()
            .filter(|k| !SINCE_4_6.contains(&k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{method} {path}: keys {missing:?} not on both sides"
        );
    }
}

/// Keys qBittorrent 4.6 gives and 4.5 does not (API 2.9.2, inactive seeding time).
const SINCE_4_6: &[&str] = &[
    "max_inactive_seeding_time",
    "max_inactive_seeding_time_enabled",
    "inactive_seeding_time_limit",
];

#[derive(Clone, Copy)]
enum Keys {
    None,
    /// Every key cas gives, qBittorrent gives.
    OursAmongTheirs,
    /// Every key qBittorrent gives, cas gives.
    TheirsAmongOurs,
}

#[test]
fn qbittorrent_nox_and_cas_answer_the_same_requests_with_the_same_codes_and_keys() {
    if !have_tools("webapi oracle", &["qbittorrent-nox"]) {
        return;
    }
    let served = Served::new(66);
    let env = &served.env;
    let web = Web::start(env, &config(env, &env.path("data")), &[]);
    let (_qbt, qport) = qbittorrent(env);
    // Before login: 403 on both; a wrong password: 200 Fails. on both.
    for port in [web.port, qport] {
        assert_eq!(
            Both::call(port, "", "GET", "app/webapiVersion", "text/plain", b"").status,
            403
        );
        let wrong = Both::call(
            port,
            "",
            "POST",
            "auth/login",
            "application/x-www-form-urlencoded",
            b"username=admin&password=wrong",
        );
        assert_eq!(
            (wrong.status, wrong.text()),
            (200, "Fails.".to_string()),
            "port {port}"
        );
    }
    let both = Both {
        cas: (web.port, Both::login(web.port)),
        qbt: (qport, Both::login(qport)),
    };
    let hash = info_hash_hex(&served.file_torrent);
    let form = "application/x-www-form-urlencoded";
    let b = "----oracle";
    let mut add = format!("--{b}\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").into_bytes();
    add.extend_from_slice(&served.file_torrent);
    add.extend_from_slice(format!("\r\n--{b}\r\nContent-Disposition: form-data; name=\"paused\"\r\n\r\ntrue\r\n--{b}--\r\n").as_bytes());
    let multipart = format!("multipart/form-data; boundary={b}");
    let garbage = format!("--{b}\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"bad.torrent\"\r\n\r\nnot a torrent\r\n--{b}--\r\n").into_bytes();
    both.check("GET", "app/preferences", form, b"", Keys::OursAmongTheirs);
    both.check("POST", "torrents/add", &multipart, &add, Keys::None);
    both.check("POST", "torrents/add", &multipart, &garbage, Keys::None);
    for line in STEPS.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (method, path, body, keys) = (f[0], f[1].replace('H', &hash), f[2], f[3]);
        let body = if body == "-" {
            String::new()
        } else {
            body.replace('H', &hash)
        };
        let keys = match keys {
            "theirs" => Keys::TheirsAmongOurs,
            _ => Keys::None,
        };
        both.check(method, &path, form, body.as_bytes(), keys);
    }
}

/// Method, call, urlencoded body (`-`: none; `H`: the torrent's info-hash), and
/// whether qBittorrent's JSON keys must all be cas's (`theirs`).
const STEPS: &str = "
    GET  app/version                      -                                   -
    POST app/webapiVersion                -                                   -
    GET  app/defaultSavePath              -                                   -
    POST torrents/add                     -                                   -
    GET  torrents/info                    -                                   theirs
    POST torrents/info                    hashes=H                            theirs
    GET  torrents/info?filter=paused      -                                   theirs
    GET  torrents/properties?hash=H       -                                   theirs
    GET  torrents/properties?hash=0000000000000000000000000000000000000000 - -
    GET  torrents/properties              -                                   -
    GET  torrents/files?hash=H            -                                   theirs
    GET  torrents/files?hash=0000000000000000000000000000000000000000 -   -
    GET  torrents/trackers?hash=H         -                                   theirs
    GET  torrents/trackers?hash=0000000000000000000000000000000000000000 - -
    POST torrents/createCategory          category=tv&savePath=               -
    POST torrents/createCategory          category=tv&savePath=               -
    POST torrents/createCategory          category=&savePath=                 -
    POST torrents/editCategory            category=nope&savePath=             -
    POST torrents/editCategory            category=tv&savePath=               -
    GET  torrents/categories              -                                   theirs
    POST torrents/setCategory             hashes=H&category=nope              -
    POST torrents/setCategory             hashes=H&category=tv                -
    POST torrents/setCategory             hashes=H                            -
    POST torrents/createTags              tags=x,y                            -
    POST torrents/addTags                 hashes=H&tags=x                     -
    POST torrents/addTags                 tags=x                              -
    GET  torrents/tags                    -                                   -
    POST torrents/removeTags              hashes=H&tags=x                     -
    POST torrents/deleteTags              tags=y                              -
    POST torrents/setShareLimits          hashes=H&ratioLimit=2&seedingTimeLimit=-1&inactiveSeedingTimeLimit=-2 -
    POST torrents/topPrio                 hashes=H                            -
    POST torrents/setForceStart           hashes=H&value=false                -
    POST torrents/setAutoManagement       hashes=H&enable=false               -
    POST torrents/pause                   hashes=H                            -
    POST torrents/resume                  hashes=H                            -
    POST torrents/recheck                 hashes=H                            -
    POST torrents/reannounce              hashes=H                            -
    GET  torrents/pause?hashes=all        -                                   -
    POST torrents/nosuchcall              -                                   -
    POST nosuchscope/version              -                                   -
    GET  transfer/info                    -                                   theirs
    GET  sync/maindata?rid=0              -                                   theirs
    POST torrents/removeCategories        categories=tv                       -
    POST torrents/delete                  hashes=H&deleteFiles=false          -
";
