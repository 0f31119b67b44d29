//! Starting the engine: the librqbit session (DHT and LSD off unless asked, TCP on
//! one listen address, the announced port set explicitly), the committer, and every
//! torrent of the catalog seeded and every unfinished download resumed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use librqbit::{
    DhtSessionConfig, ListenerMode, ListenerOptions, Session, SessionOptions,
    SessionPersistenceConfig,
};

use super::{committer, limits, node, order, storage, Engine, EngineOptions, Fetch, Source};
use crate::Store;

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

/// A free TCP port on `addr`'s interface, for a listener whose port must be known
/// before it is bound (librqbit announces the port it is given).
fn free_port(addr: SocketAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    Ok(l.local_addr()?.port())
}

/// Writes the allow-list where librqbit reads it (a URL of lines "name:first-last"),
/// and returns that URL; `None` for an empty list (every address allowed).
fn write_allowlist(store: &Store, allow: &[ipnet::IpNet]) -> anyhow::Result<Option<String>> {
    if allow.is_empty() {
        return Ok(None);
    }
    let path = store.root().join("engine").join("allow.txt");
    let lines: String = allow
        .iter()
        .map(|net| format!("allow:{}-{}\n", net.network(), net.broadcast()))
        .collect();
    std::fs::create_dir_all(store.root().join("engine"))?;
    std::fs::write(&path, lines).with_context(|| format!("write {}", path.display()))?;
    Ok(Some(format!("file://{}", path.display())))
}

impl Engine {
    /// Replaces the allow-list (empty: every address): connections open stay,
    /// new ones in both directions are checked against it.
    pub async fn set_allow(&self, allow: &[ipnet::IpNet]) -> anyhow::Result<()> {
        let url = write_allowlist(&self.store, allow)?;
        self.session.set_allowlist_url(url.as_deref()).await
    }

    /// Starts a session, seeds every torrent in the store, resumes every download.
    pub async fn start(store: Arc<Store>, opts: EngineOptions) -> anyhow::Result<Engine> {
        let mut listen = opts.listen;
        if listen == SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, listen.port()))
            && std::net::TcpListener::bind(listen).is_err()
            && std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, listen.port())).is_ok()
        {
            // A host without IPv6: every IPv4 address.
            listen = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, listen.port()));
        }
        if listen.port() == 0 {
            listen.set_port(free_port(listen)?);
        }
        // librqbit's own records are a cache: the store says what it holds. Start
        // from none, and write each torrent's bitfield from the store as it is added.
        let resume = store.root().join("engine").join("resume");
        clear_resume(&resume)?;
        let allowlist_url = write_allowlist(&store, &opts.allow)?;
        let clock = crate::config::Clock::from_env();
        let now = opts.limits.schedule.limits_at(clock.now());
        let session = Session::new_with_opts(
            store.root().join("engine"),
            SessionOptions {
                persistence: Some(SessionPersistenceConfig::Json {
                    folder: Some(resume.clone()),
                }),
                fastresume: true,
                ratelimits: librqbit::limits::LimitsConfig {
                    upload_bps: now.upload.limit(),
                    download_bps: now.download.limit(),
                },
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
                bind_device_name: opts.bind_interface.clone(),
                announce_ip: opts.announce_ip,
                encryption: match opts.encryption {
                    super::Encryption::Prefer => librqbit::EncryptionPolicy::Prefer,
                    super::Encryption::Require => librqbit::EncryptionPolicy::Require,
                    super::Encryption::Off => librqbit::EncryptionPolicy::Off,
                },
                // librqbit's default of 8 blocking-work permits, plus one for each
                // stream that spreads a fetch's piece order (each holds one).
                runtime_worker_threads: Some(8 + order::STREAMS),
                listen: Some(ListenerOptions {
                    // uTP beside TCP: peers that only reach us over UDP (NAT) get in;
                    // outgoing connections try TCP first and uTP after 1 s.
                    mode: if opts.utp {
                        ListenerMode::TcpAndUtp
                    } else {
                        ListenerMode::TcpOnly
                    },
                    listen_addr: listen,
                    announce_port: Some(listen.port()),
                    // An IPv6 address listens (on `[::]`, dual-stack) for both;
                    // whatever it listens on, the session connects to peers of both.
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
            limits: limits::LimitState::new(opts.limits),
            totals: node::load_totals(store.root()),
            added: Default::default(),
            next_id: first_free.into(),
            on_demand: opts.on_demand,
            announce_ip: opts.announce_ip,
            activating: Default::default(),
            announce_now: Default::default(),
            req2: Default::default(),
        };
        tokio::spawn(committer(store.clone(), Arc::downgrade(&engine.session)));
        tokio::spawn(limits::run(
            engine.limits.clone(),
            Arc::downgrade(&engine.session),
            clock,
        ));
        tokio::spawn(node::keep_totals(
            node::totals_path(store.root()),
            engine.totals,
            Arc::downgrade(&engine.session),
        ));
        let mut torrents = 0;
        let mut handles = Vec::new();
        if !opts.seed_all {
            return Ok(engine);
        }
        let seeded = match opts.on_demand {
            true => {
                torrents += store.catalog().torrents()?.len();
                super::activate::active_at_start(&store)?
            }
            false => store.catalog().torrents()?,
        };
        for ih in seeded {
            let Some(record) = store.catalog().torrent(&ih)? else {
                continue;
            };
            handles.push(engine.add(Source::Torrent(record.metainfo), &[]).await?);
            torrents += usize::from(!opts.on_demand);
        }
        for ih in store.catalog().downloads()? {
            if opts.on_demand && store.catalog().is_lazy(&ih) {
                // A read through the mount, or a peer, adds it.
                torrents += 1;
                continue;
            }
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
}
