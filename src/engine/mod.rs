//! The BitTorrent engine: librqbit, with the chunk store as its storage.
//!
//! [`Engine::start`] makes a librqbit session (DHT and LSD off unless asked, TCP on
//! one listen address, the announced port set explicitly) and adds every torrent of
//! the catalog, each served by a [`storage::StoreStorage`].

pub mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use librqbit::storage::StorageFactoryExt;
use librqbit::{
    AddTorrent, AddTorrentOptions, ListenerMode, ListenerOptions, Session, SessionOptions,
};

use crate::Store;

/// How the engine meets peers.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// BEP 14 Local Service Discovery.
    pub lsd: bool,
    /// The mainline DHT.
    pub dht: bool,
}

/// A running engine.
pub struct Engine {
    pub session: Arc<Session>,
    /// The address peers reach this engine at.
    pub listen: SocketAddr,
    /// Torrents being seeded.
    pub torrents: usize,
}

/// A free TCP port on `addr`'s interface, for a listener whose port must be known
/// before it is bound (librqbit announces the port it is given).
fn free_port(addr: SocketAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    Ok(l.local_addr()?.port())
}

impl Engine {
    /// Starts a session and seeds every torrent in the store.
    pub async fn start(store: Arc<Store>, opts: EngineOptions) -> anyhow::Result<Engine> {
        let mut listen = opts.listen;
        if listen.port() == 0 {
            listen.set_port(free_port(listen)?);
        }
        let session = Session::new_with_opts(
            store.root().join("engine"),
            SessionOptions {
                dht: opts.dht.then(Default::default),
                disable_local_service_discovery: !opts.lsd,
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
        .context("starting the BitTorrent session")?;
        let factory = storage::StoreStorageFactory {
            store: store.clone(),
        };
        let mut torrents = 0;
        for ih in store.catalog().torrents()? {
            let Some(record) = store.catalog().torrent(&ih)? else {
                continue;
            };
            session
                .add_torrent(
                    AddTorrent::from_bytes(record.metainfo),
                    Some(AddTorrentOptions {
                        storage_factory: Some(factory.clone().boxed()),
                        overwrite: true,
                        ..Default::default()
                    }),
                )
                .await
                .with_context(|| format!("adding torrent {ih}"))?;
            torrents += 1;
        }
        Ok(Engine {
            session,
            listen,
            torrents,
        })
    }
}
