//! The web API of `cas serve --http`: qBittorrent's WebUI API v2 as qBittorrent
//! 4.6.7 serves it (what Sonarr, Radarr, cross-seed, autobrr, exporters and web UIs
//! drive), and `GET /metrics` for Prometheus, over the running [`Engine`].
//!
//! Files: `http.rs` (parameters, errors, replies), `auth.rs` (login, sessions,
//! bans, the Host and Origin checks), `labels.rs` (categories, tags and each
//! torrent's labels, kept in `STORE/webapi.json`), `torrents.rs` (the listing),
//! `properties.rs` (one torrent's properties, files, trackers), `add.rs`
//! (`torrents/add`), `actions.rs` (delete, pause and the rest; the dispatch),
//! `categories.rs` (categories and tags), `app.rs` (`app/*`, `transfer/info`),
//! `sync.rs` (`sync/maindata`), `metrics.rs`.
//! What each call means in cas's terms: docs/webapi.md.

mod actions;
mod add;
mod app;
mod auth;
mod categories;
mod http;
mod labels;
mod metrics;
mod properties;
mod sync;
mod torrents;

pub use auth::Credentials;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};

use crate::engine::Engine;
use crate::meta::parse::Metainfo;
use crate::InfoHash;
use http::{ApiError, Params, Reply};

/// qBittorrent's version and API version that cas answers as.
pub const VERSION: &str = "v4.6.7";
pub const API_VERSION: &str = "2.9.3";

/// What the web API is told.
#[derive(Clone, Debug)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// None: every request is let in (a loopback address only).
    pub credentials: Option<Credentials>,
    /// Where the store is mounted: torrents' paths are given under it.
    pub mount: Option<PathBuf>,
    /// Directories an add's `savepath` may name.
    pub save_paths: Vec<PathBuf>,
}

/// Why the web API does not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "--http {0}: not a loopback address, and the config file's [http] has no \
         username and password: refused (anyone could drive this store)"
    )]
    NoCredentials(SocketAddr),
    #[error("--http {0:?}: give ADDR:PORT, or a port (on 127.0.0.1)")]
    BadAddress(String),
    #[error("--http {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("config file [http]: {0}")]
    Credentials(String),
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// `--http`'s value: `ADDR:PORT`, or a bare port on 127.0.0.1.
pub fn parse_address(s: &str) -> Result<SocketAddr, WebError> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| WebError::BadAddress(s.to_string()))
}

/// The state every request shares.
pub(crate) struct Api {
    engine: Arc<Engine>,
    opts: WebOptions,
    /// The address listened on.
    local: SocketAddr,
    sessions: auth::Sessions,
    labels: labels::LabelStore,
    metas: Mutex<HashMap<InfoHash, Arc<Metainfo>>>,
    /// Magnets whose metadata is being asked of peers, with their `dn`.
    pending: Mutex<BTreeMap<InfoHash, String>>,
    syncs: sync::Syncs,
    /// Unix seconds when the API started.
    started: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Api {
    fn lock_metas(&self) -> std::sync::MutexGuard<'_, HashMap<InfoHash, Arc<Metainfo>>> {
        lock(&self.metas)
    }

    fn pending_name(&self, ih: &InfoHash) -> Option<String> {
        lock(&self.pending).get(ih).cloned()
    }

    fn pending_hashes(&self) -> Vec<InfoHash> {
        lock(&self.pending).keys().copied().collect()
    }

    fn uptime_seconds(&self) -> i64 {
        unix_now() - self.started
    }

    fn seeding_seconds(&self, ih: &InfoHash) -> u64 {
        self.engine.seeding_for(ih).map_or(0, |d| d.as_secs())
    }

    /// `app/preferences`' `save_path`: the mount, else empty (no path to read from).
    fn default_save_path(&self) -> String {
        self.opts
            .mount
            .as_ref()
            .map_or(String::new(), |m| m.display().to_string())
    }

    /// A torrent's `save_path`: its directory under the mount's `torrents/`.
    fn save_path(&self, ih: &InfoHash) -> String {
        self.opts.mount.as_ref().map_or(String::new(), |m| {
            m.join("torrents").join(ih.to_hex()).display().to_string()
        })
    }

    /// A torrent's `content_path`: its file, or its folder, in its `save_path`.
    fn content_path(&self, t: &torrents::Torrent) -> String {
        self.opts.mount.as_ref().map_or(String::new(), |m| {
            m.join("torrents")
                .join(t.ih.to_hex())
                .join(t.name())
                .display()
                .to_string()
        })
    }
}

/// A web API bound to its address, ready to run.
pub struct WebServer {
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
}

impl WebServer {
    /// Binds the address, opens the labels file and gives the engine what it says
    /// (torrents paused or taken out of the list stay so, share limits).
    pub async fn bind(engine: Arc<Engine>, opts: WebOptions) -> Result<WebServer, WebError> {
        if opts.credentials.is_none() && !opts.addr.ip().is_loopback() {
            return Err(WebError::NoCredentials(opts.addr));
        }
        let labels = labels::LabelStore::open(engine.store().root())?;
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|source| WebError::Bind {
                addr: opts.addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| WebError::Bind {
            addr: opts.addr,
            source,
        })?;
        let api = Arc::new(Api {
            sessions: auth::Sessions::new(opts.credentials.clone()),
            engine,
            opts,
            local,
            labels,
            metas: Mutex::new(HashMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            syncs: sync::Syncs::default(),
            started: unix_now(),
        });
        actions::restore(&api).await;
        Ok(WebServer { api, listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.api.local
    }

    /// Serves until the process ends.
    pub async fn run(self) -> std::io::Result<()> {
        let app = axum::Router::new().fallback(handle).with_state(self.api);
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    }
}

/// Whether a call only reads (GET or POST) or acts (POST only); `None`: no such call.
fn kind(name: &str) -> Option<bool> {
    const READS: &[&str] = &[
        "app/version",
        "app/webapiVersion",
        "app/buildInfo",
        "app/preferences",
        "app/defaultSavePath",
        "transfer/info",
        "torrents/info",
        "torrents/properties",
        "torrents/files",
        "torrents/trackers",
        "torrents/categories",
        "torrents/tags",
        "sync/maindata",
        "metrics",
    ];
    const ACTIONS: &[&str] = &[
        "auth/login",
        "auth/logout",
        "app/setPreferences",
        "torrents/add",
        "torrents/delete",
        "torrents/pause",
        "torrents/resume",
        "torrents/stop",
        "torrents/start",
        "torrents/recheck",
        "torrents/reannounce",
        "torrents/setShareLimits",
        "torrents/topPrio",
        "torrents/bottomPrio",
        "torrents/increasePrio",
        "torrents/decreasePrio",
        "torrents/setForceStart",
        "torrents/setAutoManagement",
        "torrents/setCategory",
        "torrents/createCategory",
        "torrents/editCategory",
        "torrents/removeCategories",
        "torrents/createTags",
        "torrents/deleteTags",
        "torrents/addTags",
        "torrents/removeTags",
    ];
    if READS.contains(&name) {
        Some(true)
    } else if ACTIONS.contains(&name) {
        Some(false)
    } else {
        None
    }
}

/// Every request: the checks qBittorrent makes, in its order (cross-site and
/// Host, 401; session, 403; the call, 404; the method, 405), then the call.
async fn handle(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = auth::check_request(&parts.headers, api.local) {
        return e.into_response();
    }
    let path = parts.uri.path();
    let name = match path.strip_prefix("/api/v2/") {
        Some(n) => n,
        None if path == "/metrics" => "metrics",
        None => return ApiError::NotFound.into_response(),
    };
    let mut sid = api.sessions.session(&parts.headers);
    let mut set_cookie = None;
    let authed = sid.is_some() || api.sessions.open() || api.sessions.basic(&parts.headers);
    if sid.is_none() && authed && name != "auth/login" {
        // qBittorrent gives a session to a request it lets in without one.
        match api.sessions.new_session() {
            Ok(s) => {
                set_cookie = Some(auth::cookie(&s));
                sid = Some(s);
            }
            Err(e) => return e.into_response(),
        }
    }
    if !authed && name != "auth/login" {
        return ApiError::Forbidden("Forbidden".into()).into_response();
    }
    let Some(read) = kind(name) else {
        return ApiError::NotFound.into_response();
    };
    let method_ok = parts.method == Method::POST || (read && parts.method == Method::GET);
    if !method_ok {
        return ApiError::MethodNotAllowed.into_response();
    }
    let p = match Params::read(parts.uri.query(), &parts.headers, body).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let sid = sid.unwrap_or_default();
    let result = match name {
        "auth/login" => {
            let user = p.get("username").unwrap_or("");
            let pass = p.get("password").unwrap_or("");
            match api.sessions.login(peer.ip(), user, pass) {
                Ok(Some(s)) => {
                    set_cookie = Some(auth::cookie(&s));
                    Ok(Reply::Text("Ok.".into()))
                }
                Ok(None) => Ok(Reply::Text("Fails.".into())),
                Err(e) => Err(e),
            }
        }
        "auth/logout" => {
            api.sessions.logout(&sid);
            Ok(Reply::ok())
        }
        "metrics" => metrics::metrics(&api).await,
        "sync/maindata" => sync::maindata(&api, &p, &sid),
        n if n.starts_with("app/") || n.starts_with("transfer/") => app::call(&api, n),
        n => actions::call(&api, n, &p).await,
    };
    let mut response = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(c) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}
