//! The BitTorrent engine: librqbit, with the chunk store as its storage.
//!
//! [`Engine::start`] makes a librqbit session (DHT and LSD off unless asked, TCP on
//! one listen address, the announced port set explicitly), adds every torrent of the
//! catalog to seed it and every unfinished download to resume it, each served by a
//! [`storage::StoreStorage`]. This module is the only one that knows librqbit.

pub mod get;
pub mod lazy;
pub mod order;
pub mod storage;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use librqbit::storage::StorageFactoryExt;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, DhtSessionConfig, ListenerMode,
    ListenerOptions, ManagedTorrent, PeerConnectionOptions, Session, SessionOptions,
    SessionPersistenceConfig,
};

use crate::meta::parse::Metainfo;
use crate::{InfoHash, Store};

/// What the engine knows of one torrent's pieces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PieceCounts {
    /// Pieces in the torrent.
    pub pieces: usize,
    /// Pieces the store holds.
    pub held: usize,
    /// Bytes of pieces the store already held when the torrent was added.
    pub found_bytes: u64,
    /// Bytes of pieces received, verified and stored.
    pub stored_bytes: u64,
    /// Pieces received whose hash was wrong (dropped).
    pub rejected: u64,
}

/// How the engine meets peers.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// BEP 14 Local Service Discovery.
    pub lsd: bool,
    /// The mainline DHT.
    pub dht: bool,
    /// DHT nodes to join through instead of the public routers (`host:port`).
    pub dht_bootstrap: Vec<String>,
    /// Trackers announced to for every torrent, besides the torrent's own.
    pub trackers: Vec<String>,
    /// Only peers in these networks may connect or be connected to (empty: any).
    pub allow: Vec<ipnet::IpNet>,
    /// Add every torrent of the store at start (`cas serve`), or none (`cas get`).
    pub seed_all: bool,
    /// Peers to connect to for every torrent added, besides those found.
    pub peers: Vec<SocketAddr>,
}

/// Every peer librqbit knows for a torrent, connected or not, with the payload bytes
/// received from it.
pub(crate) fn peer_bytes(h: &ManagedTorrent) -> Vec<(String, u64)> {
    let Some(live) = h.live() else {
        return Vec::new();
    };
    // librqbit exports the filter's type only through its HTTP API's serde form.
    let Ok(all) = serde_json::from_str(r#"{"state":"all"}"#) else {
        return Vec::new();
    };
    live.per_peer_stats_snapshot(all)
        .peers
        .into_iter()
        .map(|(a, s)| (a, s.counters.fetched_bytes))
        .collect()
}

/// What a torrent is added to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Every piece, in librqbit's order.
    Whole,
    /// Every piece, in an order steered from outside ([`order::Rarest`]): few
    /// requests outstanding per peer, so that a new order takes effect soon; added
    /// with no file selected, for [`Engine::select_all`] once it is steered.
    Steered,
    /// Only the pieces reads through the mount want: no file selected ([`lazy`]).
    Lazy,
}

/// A running engine.
pub struct Engine {
    session: Arc<Session>,
    store: Arc<Store>,
    factory: storage::StoreStorageFactory,
    /// The address peers reach this engine at.
    listen: SocketAddr,
    /// Torrents seeded or resumed at start.
    torrents: usize,
    trackers: Vec<String>,
    peers: Vec<SocketAddr>,
    /// librqbit's fastresume folder.
    resume: PathBuf,
    /// Torrents added to the session.
    added: std::sync::Mutex<std::collections::HashSet<InfoHash>>,
    /// The id the next torrent added gets. librqbit, left to pick, takes one more
    /// than the highest it has saved, and two adds at once get the same id: the
    /// second is then answered with the first one's torrent.
    next_id: std::sync::atomic::AtomicUsize,
}

/// Removes librqbit's session records and bitfields.
fn clear_resume(dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}", dir.display())),
    };
    for e in entries {
        let path = e?.path();
        if path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// How often pieces received are made durable.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Commits the store a few times a second while pieces arrive. A failed commit stops
/// every torrent: none may go on advertising pieces that may not be durable.
async fn committer(store: Arc<Store>, session: std::sync::Weak<Session>) {
    loop {
        tokio::time::sleep(COMMIT_INTERVAL).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        if !store.has_pending() {
            continue;
        }
        let s = store.clone();
        let r = tokio::task::spawn_blocking(move || s.commit()).await;
        let err = match r {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!("committing received pieces failed, stopping every torrent: {err}");
        let handles: Vec<_> = session.with_torrents(|ts| ts.map(|(_, h)| h.clone()).collect());
        for h in handles {
            let _ = session.pause(&h).await;
        }
        return;
    }
}

/// What to fetch.
#[derive(Clone, Debug)]
pub enum Source {
    /// A .torrent file's bytes.
    Torrent(Vec<u8>),
    /// A magnet link.
    Magnet(String),
}

/// The longest magnet link taken.
const MAX_MAGNET: usize = 16 << 10;

/// A magnet link as librqbit may be given it: short, and without `so` (BEP 53
/// select-only), whose ranges librqbit expands into a list (`so=0-4000000000` would
/// ask for gigabytes); cas fetches whole torrents anyway.
pub fn safe_magnet(m: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        m.len() <= MAX_MAGNET,
        "magnet link longer than {MAX_MAGNET} bytes"
    );
    let Some(query) = m.strip_prefix("magnet:?") else {
        anyhow::bail!("not a magnet link (it must start with \"magnet:?\")");
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("so=") && !p.starts_with("so."))
        .collect();
    Ok(format!("magnet:?{}", kept.join("&")))
}

/// A free TCP port on `addr`'s interface, for a listener whose port must be known
/// before it is bound (librqbit announces the port it is given).
fn free_port(addr: SocketAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    Ok(l.local_addr()?.port())
}

impl Engine {
    /// Starts a session, seeds every torrent in the store, resumes every download.
    pub async fn start(store: Arc<Store>, opts: EngineOptions) -> anyhow::Result<Engine> {
        let mut listen = opts.listen;
        if listen.port() == 0 {
            listen.set_port(free_port(listen)?);
        }
        // librqbit's own records are a cache: the store says what it holds. Start
        // from none, and write each torrent's bitfield from the store as it is added.
        let resume = store.root().join("engine").join("resume");
        clear_resume(&resume)?;
        let allowlist_url = if opts.allow.is_empty() {
            None
        } else {
            // librqbit reads its allow-list from a URL of lines "name:first-last".
            let path = store.root().join("engine").join("allow.txt");
            let lines: String = opts
                .allow
                .iter()
                .map(|net| format!("allow:{}-{}\n", net.network(), net.broadcast()))
                .collect();
            std::fs::create_dir_all(store.root().join("engine"))?;
            std::fs::write(&path, lines).with_context(|| format!("write {}", path.display()))?;
            Some(format!("file://{}", path.display()))
        };
        let session = Session::new_with_opts(
            store.root().join("engine"),
            SessionOptions {
                persistence: Some(SessionPersistenceConfig::Json {
                    folder: Some(resume.clone()),
                }),
                fastresume: true,
                allowlist_url,
                dht: opts.dht.then(|| DhtSessionConfig {
                    bootstrap_addrs: (!opts.dht_bootstrap.is_empty())
                        .then(|| opts.dht_bootstrap.clone()),
                    port: None,
                    // The routing table is kept with the store, not in the user's cache.
                    persistence: Some(librqbit::dht::DhtPersistenceConfig {
                        dump_interval: None,
                        config_filename: Some(store.root().join("engine").join("dht.json")),
                    }),
                }),
                disable_local_service_discovery: !opts.lsd,
                // librqbit's default of 8 blocking-work permits, plus one for each
                // stream that spreads a fetch's piece order (each holds one).
                runtime_worker_threads: Some(8 + order::STREAMS),
                listen: Some(ListenerOptions {
                    mode: ListenerMode::TcpOnly,
                    listen_addr: listen,
                    announce_port: Some(listen.port()),
                    ipv4_only: listen.is_ipv4(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("starting the BitTorrent session on {listen}"))?;
        let first_free = session
            .with_torrents(|all| all.map(|(id, _)| id + 1).max())
            .unwrap_or(0);
        let engine = Engine {
            session,
            factory: storage::StoreStorageFactory::new(store.clone()),
            store: store.clone(),
            listen,
            torrents: 0,
            trackers: opts.trackers,
            peers: opts.peers,
            resume,
            added: Default::default(),
            next_id: first_free.into(),
        };
        tokio::spawn(committer(store.clone(), Arc::downgrade(&engine.session)));
        let mut torrents = 0;
        let mut handles = Vec::new();
        if !opts.seed_all {
            return Ok(engine);
        }
        for ih in store.catalog().torrents()? {
            let Some(record) = store.catalog().torrent(&ih)? else {
                continue;
            };
            handles.push(engine.add(Source::Torrent(record.metainfo), &[]).await?);
            torrents += 1;
        }
        for ih in store.catalog().downloads()? {
            let Some(torrent) = store.catalog().download(&ih)? else {
                continue;
            };
            let fetch = match store.catalog().is_lazy(&ih) {
                true => Fetch::Lazy,
                false => Fetch::Whole,
            };
            let peers = store.catalog().lazy_peers(&ih)?;
            match engine
                .add_with(Source::Torrent(torrent), &peers, fetch)
                .await
            {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::warn!("resuming download {ih}: {e:#}");
                    continue;
                }
            }
            torrents += 1;
        }
        // Serving starts when every torrent is live: until then librqbit turns away
        // the peers that its first announces bring.
        for (ih, h) in &handles {
            if let Err(e) = h.wait_until_initialized().await {
                tracing::warn!("torrent {ih}: {e:#}");
            }
        }
        Ok(Engine { torrents, ..engine })
    }

    /// Adds a torrent: seeded if the store holds it, else downloaded into the store.
    /// A .torrent is checked first (paths that would escape are refused).
    pub async fn add(
        &self,
        source: Source,
        peers: &[SocketAddr],
    ) -> anyhow::Result<(InfoHash, Arc<ManagedTorrent>)> {
        self.add_with(source, peers, Fetch::Whole).await
    }

    /// [`Engine::add`] for a fetch of some kind. A torrent added lazily before and now
    /// added whole is downloaded whole.
    pub async fn add_with(
        &self,
        source: Source,
        peers: &[SocketAddr],
        fetch: Fetch,
    ) -> anyhow::Result<(InfoHash, Arc<ManagedTorrent>)> {
        let lazy = fetch == Fetch::Lazy;
        // A private torrent (BEP 27) announces to its own tracker only.
        let mut private = false;
        // The torrent asked for, when its info-hash is known before librqbit answers.
        let mut asked = None;
        let add = match &source {
            Source::Torrent(bytes) => {
                let meta = Metainfo::parse(bytes)?;
                private = meta.private;
                asked = Some(meta.info_hash);
                let held = crate::store::content::held_pieces(&self.store, &meta)?;
                let bitv = self.resume.join(format!("{}.bitv", meta.info_hash));
                std::fs::create_dir_all(&self.resume)?;
                std::fs::write(&bitv, storage::bitfield(held.iter().map(Option::is_some)))
                    .with_context(|| format!("write {}", bitv.display()))?;
                self.factory.prepare(meta.info_hash, held);
                AddTorrent::from_bytes(bytes.clone())
            }
            Source::Magnet(m) => {
                // librqbit takes a magnet's trackers from the link only.
                let mut m = safe_magnet(m)?;
                for t in &self.trackers {
                    m.push_str("&tr=");
                    m.push_str(&crate::meta::torrent::percent_encode(t));
                }
                AddTorrent::from_url(m)
            }
        };
        let response = self
            .session
            .add_torrent(
                add,
                Some(AddTorrentOptions {
                    storage_factory: Some(self.factory.clone().boxed()),
                    preferred_id: Some(
                        self.next_id
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    ),
                    overwrite: true,
                    initial_peers: (!peers.is_empty() || !self.peers.is_empty())
                        .then(|| [peers, &self.peers].concat()),
                    trackers: (!self.trackers.is_empty() && !private)
                        .then(|| self.trackers.clone()),
                    // A steered torrent asks for pieces once its steering is in
                    // place (`order::Steering`); meanwhile it resolves metadata,
                    // announces and seeds as any other.
                    only_files: (fetch != Fetch::Whole).then(Vec::new),
                    peer_opts: (fetch == Fetch::Steered).then_some(PeerConnectionOptions {
                        max_request_window: Some(order::REQUESTS),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
            .await
            .context("adding the torrent")?;
        let (handle, already) = match response {
            AddTorrentResponse::Added(_, h) => (h, false),
            AddTorrentResponse::AlreadyManaged(_, h) => (h, true),
            AddTorrentResponse::ListOnly(_) => anyhow::bail!("torrent was only listed"),
        };
        let ih = InfoHash(handle.info_hash().0);
        if let Some(asked) = asked.filter(|a| *a != ih) {
            anyhow::bail!("asked librqbit for torrent {asked}, and it answered with {ih}");
        }
        let catalog = self.store.catalog();
        if lazy && !catalog.has_torrent(&ih) {
            catalog.set_lazy(&ih, Some(&[peers, &self.peers].concat()))?;
        } else if !lazy && catalog.is_lazy(&ih) {
            self.select_all(&handle).await?;
            catalog.set_lazy(&ih, None)?;
        } else if fetch == Fetch::Whole && already {
            // A steered fetch that stopped may have left it with nothing selected.
            self.select_all(&handle).await?;
        }
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ih);
        Ok((ih, handle))
    }

    /// The store the engine serves from and fetches into.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The address peers reach this engine at.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Torrents seeded or resumed when the engine started.
    pub fn started_with(&self) -> usize {
        self.torrents
    }

    /// Stops every torrent and the session (its listener, DHT and LSD). What was
    /// received is committed by the store's owner, not here.
    pub async fn stop(&self) {
        self.session.stop().await;
    }

    /// Piece counts of a torrent the engine runs (or ran since it started).
    pub fn counts(&self, ih: &InfoHash) -> Option<PieceCounts> {
        self.factory.counters(ih).map(|c| c.counts())
    }

    /// The session's handle on torrent `ih`, if it runs it.
    pub fn handle(&self, ih: &InfoHash) -> Option<Arc<ManagedTorrent>> {
        self.session.with_torrents(|ts| {
            ts.map(|(_, h)| h)
                .find(|h| h.info_hash().0 == ih.0)
                .cloned()
        })
    }

    /// Payload bytes sent to peers since this engine started, for a torrent it runs.
    pub fn uploaded(&self, ih: &InfoHash) -> Option<u64> {
        self.handle(ih).map(|h| h.stats().uploaded_bytes)
    }

    /// Every address the session knows for torrent `ih`'s peers, connected or not
    /// (those found by LSD, trackers and hints carry their listen port).
    pub fn peers(&self, ih: &InfoHash) -> Vec<SocketAddr> {
        let Some(h) = self.handle(ih) else {
            return Vec::new();
        };
        peer_bytes(&h)
            .into_iter()
            .filter_map(|(a, _)| a.parse().ok())
            .collect()
    }

    /// Selects every file of a torrent: one added lazily, or steered
    /// ([`Fetch::Steered`]) once its steering is in place.
    pub async fn select_all(&self, h: &Arc<ManagedTorrent>) -> anyhow::Result<()> {
        let files = h.metadata.load().as_ref().map_or(0, |m| m.file_infos.len());
        self.session
            .update_only_files(h, &(0..files).collect())
            .await
            .context("asking for the whole torrent")
    }

    /// Stops and starts torrent `h` again: the peers it was added with are tried at
    /// once, and LSD and trackers are asked again. (librqbit forgets on a pause the
    /// peers it found since the add.)
    pub async fn restart(&self, h: &Arc<ManagedTorrent>) -> anyhow::Result<()> {
        self.session.pause(h).await?;
        self.session.unpause(h).await
    }

    /// Stops and starts again every download in progress: peers it gave up on (a
    /// cut link makes librqbit wait up to an hour before trying one again) are tried
    /// at once, and LSD and trackers are asked again.
    pub async fn restart_downloads(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for ih in self.store.catalog().downloads()? {
            let Some(h) = self.handle(&ih) else {
                continue;
            };
            if h.stats().finished {
                continue;
            }
            self.restart(&h).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Bytes received from peers, verified and stored, since this engine started.
    pub fn received_total(&self) -> u64 {
        self.factory.received_total()
    }

    /// Payload bytes sent to peers since this engine started, over every torrent.
    pub fn uploaded_total(&self) -> u64 {
        self.session
            .with_torrents(|ts| ts.map(|(_, h)| h.stats().uploaded_bytes).sum())
    }

    /// Adds every torrent of the store not yet in the session (after an import made
    /// while serving, say).
    pub async fn add_new(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for ih in self.store.catalog().torrents()? {
            let known = self
                .added
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&ih);
            if known {
                continue;
            }
            if let Some(record) = self.store.catalog().torrent(&ih)? {
                self.add(Source::Torrent(record.metainfo), &[]).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}
