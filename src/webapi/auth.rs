//! Who may call the API, as qBittorrent 4.6 decides it: a login gives a session
//! (the `SID` cookie, an hour without use ends it); five failed logins from one
//! address ban it for an hour (403); a request whose `Origin` or `Referer` names
//! another host than its `Host` (or `X-Forwarded-Host`), or whose `Host` names
//! another port than the one listened on, is refused with 401 (cross-site request
//! forgery, DNS rebinding). HTTP Basic credentials are taken too (Sonarr sends them).
//! With no credentials configured (loopback only) every request is let in and
//! still gets a session cookie, which cross-seed insists on.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};

use super::http::ApiError;

/// How long a session lasts without use (qBittorrent's default).
const SESSION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Failed logins from one address before it is banned, and for how long.
const MAX_FAILURES: u32 = 5;
const BAN: Duration = Duration::from_secs(3600);

/// The password, as the config file gives it.
#[derive(Clone)]
pub enum Secret {
    Plain(String),
    /// `blake3:SALT:HASH`: HASH is the BLAKE3 of SALT then the password.
    Blake3 {
        salt: String,
        hash: blake3::Hash,
    },
}

/// The one user of the API.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ...)", self.username)
    }
}

impl Credentials {
    /// From `[http]`'s `username` and `password` or `password-hash`.
    pub fn new(
        username: &str,
        password: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<Credentials, String> {
        let secret = match (password, password_hash) {
            (Some(p), None) => Secret::Plain(p.to_string()),
            (None, Some(h)) => {
                let mut parts = h.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("blake3"), Some(salt), Some(hex)) => Secret::Blake3 {
                        salt: salt.to_string(),
                        hash: blake3::Hash::from_hex(hex)
                            .map_err(|e| format!("password-hash: {e}"))?,
                    },
                    _ => return Err("password-hash: not blake3:SALT:HASH".into()),
                }
            }
            (Some(_), Some(_)) => return Err("give password or password-hash, not both".into()),
            (None, None) => return Err("username without password or password-hash".into()),
        };
        if username.is_empty() {
            return Err("username is empty".into());
        }
        Ok(Credentials {
            username: username.to_string(),
            secret,
        })
    }

    /// Whether `user` and `password` are these (compared in constant time).
    fn matches(&self, user: &str, password: &str) -> bool {
        let user_ok = blake3::hash(user.as_bytes()) == blake3::hash(self.username.as_bytes());
        let pass_ok = match &self.secret {
            Secret::Plain(p) => blake3::hash(password.as_bytes()) == blake3::hash(p.as_bytes()),
            Secret::Blake3 { salt, hash } => {
                let mut h = blake3::Hasher::new();
                h.update(salt.as_bytes());
                h.update(password.as_bytes());
                h.finalize() == *hash
            }
        };
        user_ok & pass_ok
    }
}

#[derive(Default)]
struct State {
    /// Session id to last use.
    sessions: HashMap<String, Instant>,
    /// Failed logins by address: how many, and when the last was.
    failures: HashMap<IpAddr, (u32, Instant)>,
}

/// The sessions and the failed logins.
pub struct Sessions {
    credentials: Option<Credentials>,
    state: Mutex<State>,
}

impl Sessions {
    pub fn new(credentials: Option<Credentials>) -> Sessions {
        Sessions {
            credentials,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No credentials: every request is let in.
    pub fn open(&self) -> bool {
        self.credentials.is_none()
    }

    /// A new session's id: 128 random bits, as 32 hex digits.
    pub fn new_session(&self) -> Result<String, ApiError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(super::http::internal)?;
        let sid = hex::encode(b);
        let mut s = self.state();
        let now = Instant::now();
        s.sessions
            .retain(|_, t| now.duration_since(*t) < SESSION_TIMEOUT);
        s.sessions.insert(sid.clone(), now);
        Ok(sid)
    }

    /// `auth/login`: a new session, `None` for wrong credentials; 403 from a banned
    /// address.
    pub fn login(
        &self,
        from: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<Option<String>, ApiError> {
        {
            let mut s = self.state();
            if let Some((n, last)) = s.failures.get(&from).copied() {
                if last.elapsed() >= BAN {
                    s.failures.remove(&from);
                } else if n >= MAX_FAILURES {
                    return Err(ApiError::Forbidden(
                        "Your IP address has been banned after too many failed authentication attempts."
                            .into(),
                    ));
                }
            }
        }
        let ok = self
            .credentials
            .as_ref()
            .is_none_or(|c| c.matches(user, password));
        if !ok {
            let mut s = self.state();
            let e = s.failures.entry(from).or_insert((0, Instant::now()));
            e.0 += 1;
            e.1 = Instant::now();
            tracing::warn!("web API: failed login from {from} ({} in a row)", e.0);
            return Ok(None);
        }
        self.state().failures.remove(&from);
        self.new_session().map(Some)
    }

    /// The session a request's `SID` cookie names, if it is one (its use noted).
    pub fn session(&self, headers: &HeaderMap) -> Option<String> {
        let sid = cookie_sid(headers)?;
        let mut s = self.state();
        let last = s.sessions.get_mut(&sid)?;
        if last.elapsed() >= SESSION_TIMEOUT {
            s.sessions.remove(&sid);
            return None;
        }
        *last = Instant::now();
        Some(sid)
    }

    /// Whether the request carries the right HTTP Basic credentials.
    pub fn basic(&self, headers: &HeaderMap) -> bool {
        let Some(c) = &self.credentials else {
            return false;
        };
        let Some(b64) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Some(text) = base64_decode(b64.trim()).and_then(|b| String::from_utf8(b).ok()) else {
            return false;
        };
        text.split_once(':').is_some_and(|(u, p)| c.matches(u, p))
    }

    pub fn logout(&self, sid: &str) {
        self.state().sessions.remove(sid);
    }
}

/// The `Set-Cookie` value of a session.
pub fn cookie(sid: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("SID={sid}; HttpOnly; SameSite=Strict; path=/"))
        .unwrap_or_else(|_| HeaderValue::from_static("SID=; path=/"))
}

fn cookie_sid(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("SID="))
        .map(str::to_string)
}

/// Host and port of a `Host` value or of a URL's authority (port `None` if absent).
fn authority(s: &str) -> (String, Option<u16>) {
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split(['/', '?', '#']).next().unwrap_or("");
    let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => (v6, None),
        },
        None => match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        },
    };
    (host.to_ascii_lowercase(), port.and_then(|p| p.parse().ok()))
}

/// qBittorrent's checks before anything else: the cross-site request check on
/// `Origin` (else `Referer`) against `X-Forwarded-Host` (else `Host`), then the
/// `Host` header's port against the port listened on. 401 on failure.
pub fn check_request(headers: &HeaderMap, local: SocketAddr) -> Result<(), ApiError> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let host = get("host");
    let target = match get("x-forwarded-host") {
        "" => host,
        forwarded => forwarded,
    };
    let source = match (get("origin"), get("referer")) {
        ("", "") => None,
        ("", referer) => Some(referer),
        (origin, _) => Some(origin),
    };
    if let Some(source) = source {
        if authority(source) != authority(target) {
            tracing::warn!("web API: cross-site request refused: from {source:?} to {target:?}");
            return Err(ApiError::Unauthorized("Unauthorized".into()));
        }
    }
    if let (_, Some(port)) = authority(host) {
        if port != local.port() {
            tracing::warn!("web API: Host header {host:?} names another port");
            return Err(ApiError::Unauthorized("Unauthorized".into()));
        }
    }
    Ok(())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_match_host_and_host_the_port() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ok = [
            headers(&[("host", "127.0.0.1:8080")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[
                ("host", "box:8080"),
                ("referer", "http://box:8080/index.html"),
            ]),
            headers(&[("host", "box")]),
        ];
        for h in ok {
            assert!(check_request(&h, local).is_ok(), "{h:?}");
        }
        let refused = [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("referer", "http://127.0.0.1:9999/"),
            ]),
            headers(&[("host", "127.0.0.1:9090")]),
        ];
        for h in refused {
            assert_eq!(check_request(&h, local).unwrap_err().status(), 401, "{h:?}");
        }
    }

    #[test]
    fn five_failed_logins_ban_the_address_and_a_hash_checks_like_a_password() {
        let salt = "pepper";
        let hash = blake3::hash(b"peppersecret").to_hex();
        let c = Credentials::new("admin", None, Some(&format!("blake3:{salt}:{hash}"))).unwrap();
        let s = Sessions::new(Some(c));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(s.login(ip, "admin", "secret").unwrap().is_some());
        for _ in 0..MAX_FAILURES {
            assert!(s.login(ip, "admin", "wrong").unwrap().is_none());
        }
        assert_eq!(s.login(ip, "admin", "secret").unwrap_err().status(), 403);
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(s.login(other, "admin", "secret").unwrap().is_some());
    }

    #[test]
    fn basic_credentials_are_read() {
        let c = Credentials::new("admin", Some("adminadmin"), None).unwrap();
        let s = Sessions::new(Some(c));
        // "admin:adminadmin"
        assert!(s.basic(&headers(&[(
            "authorization",
            "Basic YWRtaW46YWRtaW5hZG1pbg=="
        )])));
        assert!(!s.basic(&headers(&[("authorization", "Basic YWRtaW46d3Jvbmc=")])));
    }
}
