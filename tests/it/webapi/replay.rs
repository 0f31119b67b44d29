//! Raw HTTP against the web API: one request at a time over a fresh connection, and
//! the replay of a fixture (`tests/it/webapi/*.http`): requests as a tool sends them,
//! each followed by what that tool needs back.
//!
//! A fixture is blocks of `>>>`, the request (head lines, a blank line, the body),
//! then `<<< STATUS` and expectations, one a line: `body: TEXT` (exactly),
//! `content-type: PREFIX`, `set-cookie` (a `SID` cookie is set), `json-keys: a,b`
//! (the object has them; for an array, its first element), `json-first: k=v; k=v`
//! (the array's first element has those values), `retry` (sent again for up to 10 s
//! until the rest holds). `{name}` in a request is replaced by a value of `vars`;
//! `{cookie}` is the last `SID=...` set, `{set-cookie}` that header whole.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A response: status, headers (lower-case names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (lines without the final blank line; Content-Length and
/// `Connection: close` are added) and `body` to 127.0.0.1:`port`.
pub fn send(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = head
        .trim_end()
        .replace('\n', "\r\n")
        .replace("\r\r\n", "\r\n");
    req.push_str(&format!(
        "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    // qBittorrent keeps the connection open whatever the request says: read the
    // head, then as many bytes as Content-Length says (else to the end).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "no response head: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    match headers.iter().find(|(k, _)| k == "content-length") {
        Some((_, len)) => {
            let len: usize = len.parse().unwrap();
            while body.len() < len {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the body ended early: {head}");
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            s.read_to_end(&mut body).unwrap();
        }
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// `text` with every `{name}` of `vars` replaced; `{torrent}` by `torrent`'s bytes.
fn fill(text: &str, vars: &HashMap<&str, String>, torrent: &[u8]) -> Vec<u8> {
    let mut s = text.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    let mut out = Vec::new();
    for (i, part) in s.split("{torrent}").enumerate() {
        if i > 0 {
            out.extend_from_slice(torrent);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// Whether `a` meets every expectation; the first that fails, said.
fn check(a: &Answer, status: u16, expect: &[String]) -> Result<(), String> {
    if a.status != status {
        return Err(format!(
            "status {} ({:?}), not {status}",
            a.status,
            a.text()
        ));
    }
    for e in expect {
        let (what, arg) = e.split_once(": ").unwrap_or((e.as_str(), ""));
        let json = || serde_json::from_slice::<serde_json::Value>(&a.body);
        let ok = match what {
            "retry" => true,
            "body" => a.text() == arg,
            "content-type" => a.header("content-type").is_some_and(|c| c.starts_with(arg)),
            "set-cookie" => a
                .header("set-cookie")
                .is_some_and(|c| c.starts_with("SID=")),
            "json-keys" => json().is_ok_and(|v| {
                let o = if v.is_array() { v[0].clone() } else { v };
                arg.split(',').all(|k| o.get(k).is_some())
            }),
            "json-first" => json().is_ok_and(|v| {
                arg.split("; ").all(|kv| {
                    let (k, want) = kv.split_once('=').unwrap();
                    match &v[0][k] {
                        serde_json::Value::String(s) => s == want,
                        other => serde_json::to_string(other).is_ok_and(|s| s == want),
                    }
                })
            }),
            other => panic!("unknown expectation {other:?}"),
        };
        if !ok {
            return Err(format!("{e:?} does not hold: {:?}", a.text()));
        }
    }
    Ok(())
}

/// Replays fixture `name` against 127.0.0.1:`port`; panics at the first answer that
/// is not what the tool expects.
pub fn replay(port: u16, name: &str, mut vars: HashMap<&str, String>, torrent: &[u8]) {
    let path = format!("{}/tests/it/webapi/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    for (n, block) in text.split("\n>>>\n").skip(1).enumerate() {
        let (request, expect) = block.split_once("\n<<< ").expect("<<< after a request");
        let mut lines = expect.lines();
        let status: u16 = lines.next().unwrap().trim().parse().unwrap();
        let expect: Vec<String> = lines
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| String::from_utf8(fill(l, &vars, b"")).unwrap())
            .collect();
        let (head, body) = request.split_once("\n\n").unwrap_or((request, ""));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let head = String::from_utf8(fill(head, &vars, b"")).unwrap();
            let body = fill(&body.replace('\n', "\r\n"), &vars, torrent);
            let a = send(port, &head, &body);
            match check(&a, status, &expect) {
                Ok(()) => {
                    if let Some(c) = a.header("set-cookie") {
                        let sid = c.split(';').next().unwrap().to_string();
                        vars.insert("cookie", sid);
                        vars.insert("set-cookie", c.to_string());
                    }
                    break;
                }
                Err(e) if expect.iter().any(|x| x == "retry") && Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "{name}, request {} ({}): {e}",
                    n + 1,
                    head.lines().next().unwrap_or("")
                ),
            }
        }
    }
}
