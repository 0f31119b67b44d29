//! `cas serve` (and `cas sync`, `cas mount`) as a library: the engine seeding the
//! store, the channels kept, a folder of .torrent files watched, the store mounted.
//! The binary adds its control socket and its printing; any other front end (a web
//! API) drives the same [`Service`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::engine::lazy::OnDemand;
use crate::engine::{Engine, EngineOptions};
use crate::mount::StoreTree;
use crate::store::Store;
use crate::sync::node::{Node, SyncOptions};
use crate::webapi::{WebOptions, WebServer};

/// A mount of the store while the service runs.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub at: PathBuf,
    /// How long a read waits for a piece the store lacks before it fails with EIO.
    pub read_timeout: Duration,
    /// Open files with direct I/O.
    pub direct_io: bool,
}

/// What a service runs.
#[derive(Clone)]
pub struct ServiceOptions {
    pub engine: EngineOptions,
    /// A directory kept the same on every node of a channel.
    pub sync: Option<SyncOptions>,
    /// A folder whose .torrent files are added as they appear.
    pub watch: Option<PathBuf>,
    pub mount: Option<MountOptions>,
    /// qBittorrent's Web API and `/metrics` (`--http`).
    pub web: Option<WebOptions>,
}

/// A running service. [`Service::stop`] ends it.
pub struct Service {
    engine: Arc<Engine>,
    syncs: Vec<Arc<Node>>,
    running: JoinSet<anyhow::Result<()>>,
    mounted: Option<cas_fuse::Mount>,
    /// Where the web API listens.
    web: Option<std::net::SocketAddr>,
    /// A mount a dead process had left on the mount point, detached first.
    pub detached_stale_mount: bool,
}

impl Service {
    /// Starts the engine (seeding every torrent of the store), then the channel's
    /// node, the watch, the web API and the mount. Call from within a multi-thread tokio runtime.
    pub async fn start(store: Arc<Store>, opts: ServiceOptions) -> anyhow::Result<Service> {
        if let Some(dir) = &opts.watch {
            anyhow::ensure!(dir.is_dir(), "{}: not a directory to watch", dir.display());
        }
        let engine = Arc::new(Engine::start(store, opts.engine).await?);
        engine.serve_on_demand();
        let mut syncs = Vec::new();
        if let Some(sync) = opts.sync {
            syncs.push(Node::start(engine.clone(), sync).await?);
        }
        let mut running = JoinSet::new();
        for node in &syncs {
            let node = node.clone();
            running.spawn(async move { node.run().await.context("sync stopped") });
        }
        if let Some(dir) = opts.watch {
            let engine = engine.clone();
            running.spawn(async move {
                crate::engine::watch::watch(engine, dir).await;
                Ok(())
            });
        }
        let mut web = None;
        if let Some(w) = opts.web {
            let server = WebServer::bind(engine.clone(), w).await?;
            web = Some(server.local_addr());
            running.spawn(async move { server.run().await.context("the web API stopped") });
        }
        let mut service = Service {
            engine,
            syncs,
            running,
            mounted: None,
            web,
            detached_stale_mount: false,
        };
        if let Some(m) = &opts.mount {
            service.mount(m)?;
        }
        Ok(service)
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The channels this service keeps.
    pub fn syncs(&self) -> &[Arc<Node>] {
        &self.syncs
    }

    /// Where the web API listens, if it does.
    pub fn web_addr(&self) -> Option<std::net::SocketAddr> {
        self.web
    }

    /// Where the store is mounted, if it is.
    pub fn mounted_at(&self) -> Option<&Path> {
        self.mounted.as_ref().map(|m| m.path())
    }

    /// Mounts the store: a mount left there by a process that died is detached first.
    fn mount(&mut self, m: &MountOptions) -> anyhow::Result<()> {
        if cas_fuse::is_stale_mount(&m.at) {
            cas_fuse::detach(&m.at)
                .with_context(|| format!("unmounting the stale mount at {}", m.at.display()))?;
            self.detached_stale_mount = true;
        }
        let fetch = OnDemand::new(
            self.engine.clone(),
            tokio::runtime::Handle::current(),
            m.read_timeout,
        );
        let tree = Arc::new(StoreTree::new(
            self.engine.store().clone(),
            Some(Arc::new(fetch)),
        ));
        let options = cas_fuse::MountOptions {
            fs_name: format!("cas:{}", self.engine.store().root().display()),
            direct_io: m.direct_io,
            ..Default::default()
        };
        self.mounted = Some(cas_fuse::mount(tree, &m.at, &options)?);
        Ok(())
    }

    /// Waits until something the service runs fails (a channel's node), and returns
    /// its error; never returns while all goes well.
    pub async fn failed(&mut self) -> anyhow::Error {
        loop {
            match self.running.join_next().await {
                Some(Ok(Err(e))) => return e,
                Some(Err(e)) if e.is_panic() => return anyhow::anyhow!("a task panicked: {e}"),
                Some(_) => continue,
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Unmounts (a mount with files still open is detached and goes when they
    /// close), stops what runs, then the engine. Returns where it was mounted.
    pub async fn stop(mut self) -> Option<PathBuf> {
        let at = self.mounted.as_ref().map(|m| m.path().to_path_buf());
        if let Some(m) = self.mounted.take() {
            // Joining the filesystem's threads blocks: keep the runtime's other
            // workers going.
            tokio::task::block_in_place(|| drop(m));
        }
        self.running.abort_all();
        self.engine.stop().await;
        at
    }
}
