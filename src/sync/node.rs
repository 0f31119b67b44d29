//! A node of a channel at work: the watcher, the update exchange, fetching and
//! applying, publishing. Runs on the engine's runtime, inside `cas sync`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::UdpSocket;

use super::ahead::{self, Ahead};
use super::watch::{watch, Quiet};
use super::wire::Message;
use super::{apply, merge, now, ChannelStatus};
use crate::catalog::TorrentKind;
use crate::channel::{self, Applied, Channel, Channels, SignedUpdate, SyncState, Update};
use crate::engine::get::{get, GetOptions};
use crate::engine::{Engine, Source};
use crate::import::{import, publish_bytes, ImportOptions};
use crate::manifest::Manifest;
use crate::meta::torrent::Publish;
use crate::{InfoHash, Store, TreeId};

mod exchange;
mod swarm;

/// How a node syncs.
#[derive(Clone)]
pub struct SyncOptions {
    pub dir: PathBuf,
    pub channel: String,
    pub node: String,
    /// How long the directory must stay still before it is scanned.
    pub quiet: Duration,
    /// How long an update's tree may take to arrive before the update is refused.
    pub fetch_timeout: Duration,
    /// Peers to ask besides those found.
    pub peers: Vec<SocketAddr>,
    /// Only datagrams from these networks are read (empty: any), as `--allow`.
    pub allow: Vec<ipnet::IpNet>,
    /// Lines for the user (published, applied).
    pub say: Arc<dyn Fn(String) + Send + Sync>,
}

/// How often peers are asked for newer updates.
const POLL: Duration = Duration::from_secs(2);
/// How long a fetch may go without a byte before its peers are asked again.
const STALL: Duration = Duration::from_secs(10);
/// The same, the first time, for a fetch that has had no byte yet: its first
/// torrent (the manifest, a few KiB) comes in a fraction of a second when it comes.
const FIRST_STALL: Duration = Duration::from_secs(3);
/// How long after a failed fetch the update is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What the tasks of a node share.
pub struct Node {
    engine: Arc<Engine>,
    opts: SyncOptions,
    channel: Channel,
    /// The channel's own torrent, whose peers are the channel's peers.
    rendezvous: InfoHash,
    socket: UdpSocket,
    state: Mutex<SyncState>,
    newest: Mutex<Option<SignedUpdate>>,
    heard: Mutex<BTreeSet<SocketAddr>>,
    wake: tokio::sync::Notify,
    /// What the last scan saw of each file, and the piece length it cut them with.
    stat_cache: Mutex<(u32, crate::import::StatCache)>,
    /// What other nodes hold of the torrents being fetched.
    gossip: Mutex<swarm::Gossip>,
    /// This node's name for itself in what it tells of those torrents: random, so
    /// that nodes split the pieces among them the same way ([`swarm`]).
    id: u64,
}

/// The channel's torrent: 44 bytes naming the public key, the same on every node,
/// so that all of them meet in one swarm. Stored, recorded and pinned here.
fn rendezvous_torrent(store: &Store, channel: &Channel) -> crate::Result<(InfoHash, Vec<u8>)> {
    let mut content = b"cas channel\0".to_vec();
    content.extend_from_slice(&channel.public.0);
    let name = format!("cas-channel-{}", hex::encode(channel.public.0));
    let published = publish_bytes(
        store,
        &content,
        &name,
        TorrentKind::Foreign,
        channel::RENDEZVOUS_PIECE_LENGTH,
        &Publish::default(),
    )?;
    let ih = published.info_hash;
    store.catalog().pin(&ih)?;
    Ok((ih, crate::read::torrent(store, &ih)?.metainfo))
}

fn rank_of(applied: &Option<Applied>) -> (u64, [u8; 32]) {
    applied.as_ref().map_or((0, [0; 32]), |a| (a.seq, a.tree.0))
}

/// Whether two trees hold different things (mtimes aside).
fn differs(a: &Manifest, b: &Manifest) -> bool {
    let paths = |m: &Manifest| m.entries.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    paths(a) != paths(b)
        || a.entries
            .iter()
            .zip(&b.entries)
            .any(|(x, y)| !merge::same(Some(x), Some(y)))
}

impl Node {
    /// Sets a node up: the channel's torrent seeded, the update socket bound on the
    /// engine's port number.
    pub async fn start(engine: Arc<Engine>, opts: SyncOptions) -> anyhow::Result<Arc<Node>> {
        let store = engine.store().clone();
        let channels = Channels::of(&store);
        let channel = channels.get(&opts.channel)?;
        let mut state = channels.state(&opts.channel)?;
        state.dir = Some(opts.dir.clone());
        state.node = Some(opts.node.clone());
        channels.set_state(&opts.channel, &state)?;
        let newest = match &state.newest {
            Some(b) => SignedUpdate::decode(b).ok().filter(|u| u.verify().is_ok()),
            None => None,
        };
        apply::clean(&opts.dir)?;
        let (rendezvous, metainfo) = rendezvous_torrent(&store, &channel)?;
        engine.add(Source::Torrent(metainfo), &opts.peers).await?;
        let socket = UdpSocket::bind(engine.listen_addr())
            .await
            .with_context(|| {
                format!("binding the update socket on UDP {}", engine.listen_addr())
            })?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)?;
        Ok(Arc::new(Node {
            engine,
            opts,
            channel,
            rendezvous,
            socket,
            state: Mutex::new(state),
            newest: Mutex::new(newest),
            heard: Mutex::new(BTreeSet::new()),
            wake: tokio::sync::Notify::new(),
            stat_cache: Mutex::default(),
            gossip: Mutex::default(),
            id: u64::from_le_bytes(id),
        }))
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    fn newest(&self) -> Option<SignedUpdate> {
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The rank of the newest update this node holds or applied.
    fn held_rank(&self) -> (u64, [u8; 32]) {
        self.newest()
            .map_or_else(|| rank_of(&self.state().applied), |u| u.rank())
    }

    /// The newest update, if the directory has not been brought to it yet.
    fn pending(&self) -> Option<SignedUpdate> {
        self.newest()
            .filter(|u| u.rank() > rank_of(&self.state().applied))
    }

    fn state(&self) -> SyncState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn save(&self, change: impl FnOnce(&mut SyncState)) -> anyhow::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut s);
        Channels::of(self.store()).set_state(&self.opts.channel, &s)?;
        Ok(())
    }

    /// The channel's peers known now.
    pub fn peers(&self) -> Vec<SocketAddr> {
        let mut all: BTreeSet<SocketAddr> =
            self.engine.peers(&self.rendezvous).into_iter().collect();
        all.extend(self.opts.peers.iter().copied());
        all.extend(self.heard.lock().unwrap_or_else(|e| e.into_inner()).iter());
        all.remove(&self.engine.listen_addr());
        let allow = &self.opts.allow;
        all.into_iter()
            .filter(|a| allow.is_empty() || allow.iter().any(|n| n.contains(&a.ip())))
            .collect()
    }

    pub fn status(&self) -> ChannelStatus {
        let state = self.state();
        ChannelStatus {
            name: self.opts.channel.clone(),
            public: self.channel.public.to_string(),
            can_publish: self.channel.secret.is_some(),
            dir: Some(self.opts.dir.display().to_string()),
            node: Some(self.opts.node.clone()),
            newest_seq: self.newest().map(|u| u.update.seq),
            applied_seq: state.applied.as_ref().map(|a| a.seq),
            applied_tree: state.applied.as_ref().map(|a| a.tree),
            piece_length: channel::cut_length(self.store(), &self.channel, state.applied.as_ref()),
            running: true,
            peers: self.peers().iter().map(|p| p.to_string()).collect(),
            bytes_in: self.engine.received_total(),
            bytes_out: self.engine.uploaded_total(),
        }
    }

    /// Imports the directory as it is now.
    async fn scan(&self) -> anyhow::Result<(TreeId, InfoHash, Manifest)> {
        let store = self.engine.store().clone();
        let dir = self.opts.dir.clone();
        let cut = channel::cut_length(&store, &self.channel, self.state().applied.as_ref());
        // Files unchanged since the last scan are not read again (if cut the same way).
        let reuse = {
            let cache = self.stat_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.0 == cut {
                cache.1.clone()
            } else {
                Default::default()
            }
        };
        let opts = ImportOptions {
            name: Some(channel::ref_name(&self.opts.channel)),
            ignore: vec![apply::WORK_DIR.to_string()],
            reuse: Some(reuse),
            cut_with: Some(cut),
            ..Default::default()
        };
        let mut report =
            tokio::task::spawn_blocking(move || import(&store, &dir, &opts, &|_| {}, &|_| {}))
                .await??;
        *self.stat_cache.lock().unwrap_or_else(|e| e.into_inner()) =
            (cut, std::mem::take(&mut report.stat_cache));
        self.engine.add_new().await?;
        let manifest = crate::read::load_manifest(self.store(), &report.tree)?;
        Ok((report.tree, report.tree_torrent.info_hash, manifest))
    }

    fn manifest_of(&self, tree: Option<TreeId>) -> anyhow::Result<Manifest> {
        match tree {
            Some(t) if self.store().catalog().tree(&t)?.is_some() => {
                Ok(crate::read::load_manifest(self.store(), &t)?)
            }
            _ => Ok(Manifest::default()),
        }
    }

    /// Publishes the directory as it is, if it holds something other than the last
    /// tree applied and this node may.
    async fn publish_changes(&self, told: &mut bool, over_pending: bool) -> anyhow::Result<()> {
        let (tree, manifest_ih, local) = self.scan().await?;
        tracing::debug!("{}: scanned as tree {tree}", self.opts.dir.display());
        if self.pending().is_some() && !over_pending {
            // Arrived while scanning: merged first, then this runs again.
            return Ok(());
        }
        let applied = self.state().applied;
        let base = self.manifest_of(applied.as_ref().map(|a| a.tree))?;
        if applied.is_some() && !differs(&local, &base)
            || applied.is_none() && local.entries.is_empty()
        {
            return Ok(());
        }
        let Some(secret) = &self.channel.secret else {
            if !*told {
                tracing::warn!(
                    "{}: local changes are not published: this node has no secret key for channel {}",
                    self.opts.dir.display(),
                    self.opts.channel
                );
                *told = true;
            }
            return Ok(());
        };
        let held = self.newest().map_or(0, |u| u.update.seq);
        let seq = held.max(rank_of(&applied).0) + 1;
        let time = now();
        let update = Update {
            channel: self.channel.public,
            seq,
            tree,
            manifest: manifest_ih,
            parent: applied.as_ref().map(|a| a.tree),
            node: self.opts.node.clone(),
            time,
        };
        let signed = SignedUpdate::sign(update, secret);
        let bytes = signed.encode();
        *self.newest.lock().unwrap_or_else(|e| e.into_inner()) = Some(signed);
        self.save(|s| {
            s.newest = Some(bytes.clone());
            s.applied = Some(Applied {
                seq,
                tree,
                node: self.opts.node.clone(),
                time,
            });
        })?;
        self.send(&Message::Update(bytes), &self.peers()).await;
        (self.opts.say)(format!("published update {seq} (tree {tree})"));
        Ok(())
    }

    /// Fetches the tree `u` names and merges it into the directory.
    async fn apply_update(self: &Arc<Self>, u: &SignedUpdate) -> anyhow::Result<()> {
        let up = &u.update;
        let opts = GetOptions {
            peers: self.peers(),
            timeout: Some(self.opts.fetch_timeout),
            lazy: false,
            swarm: Some(self.clone() as Arc<dyn crate::engine::order::Swarm>),
        };
        let magnet = format!("magnet:?xt=urn:btih:{}", up.manifest);
        // A fetch that stops moving (a link cut and back) gets its peers asked again.
        let moved = Mutex::new((0u64, Instant::now()));
        let progress = |have: u64, _want: u64| {
            let mut m = moved.lock().unwrap_or_else(|e| e.into_inner());
            if have != m.0 {
                *m = (have, Instant::now());
            }
        };
        // Only this loop applies or publishes, so neither changes while the tree comes.
        let applied = self.state().applied;
        let mine = self.manifest_of(applied.as_ref().map(|a| a.tree))?;
        let writer = ahead::Writer::start(
            self.engine.store().clone(),
            Ahead::new(&self.opts.dir, up.tree, &mine),
        );
        let fetch = get(&self.engine, &magnet, &opts, &progress);
        tokio::pin!(fetch);
        let mut restarted = false;
        let report = loop {
            // Progress during the wait resets `moved`, so it then counts as no stall.
            let nothing_yet = moved.lock().unwrap_or_else(|e| e.into_inner()).0 == 0;
            let limit = if nothing_yet && !restarted {
                FIRST_STALL
            } else {
                STALL
            };
            tokio::select! {
                r = &mut fetch => break r,
                _ = tokio::time::sleep(limit) => {
                    if moved.lock().unwrap_or_else(|e| e.into_inner()).1.elapsed() >= limit {
                        tracing::debug!("fetch of tree {} stalled; asking its peers again", up.tree);
                        if let Err(e) = self.engine.restart_downloads().await {
                            tracing::warn!("restarting downloads: {e:#}");
                        }
                        restarted = true;
                        *moved.lock().unwrap_or_else(|e| e.into_inner()) = (0, Instant::now());
                    }
                }
            }
        };
        let ahead = writer.finish().await;
        let report =
            report.with_context(|| format!("its tree {} could not be fetched", up.tree))?;
        anyhow::ensure!(
            report.tree == Some(up.tree),
            "its manifest torrent {} does not carry tree {}",
            up.manifest,
            up.tree
        );
        let catalog = self.store().catalog();
        catalog.set_ref(&channel::ref_name(&self.opts.channel), &up.tree)?;
        for ih in &report.torrents {
            catalog.unpin(ih)?;
        }
        let (_, _, local) = self.scan().await?;
        let known_parent = up
            .parent
            .filter(|p| catalog.tree(p).ok().flatten().is_some());
        let base = self.manifest_of(known_parent.or(applied.as_ref().map(|a| a.tree)))?;
        let remote = crate::read::load_manifest(self.store(), &up.tree)?;
        let when = now();
        // A local version that is the last applied one came from that update's node.
        let origin = |e: &crate::manifest::Entry| match &applied {
            Some(a)
                if mine
                    .entries
                    .iter()
                    .any(|m| m.path == e.path && merge::same(Some(m), Some(e))) =>
            {
                (a.node.clone(), a.time)
            }
            _ => (self.opts.node.clone(), when),
        };
        let plan = merge::plan(&base, &local, &remote, &origin);
        let store = self.engine.store().clone();
        let dir = self.opts.dir.clone();
        let node = self.opts.node.clone();
        let mut ahead = ahead.unwrap_or_else(|| Ahead::none(&dir));
        let done = tokio::task::spawn_blocking(move || {
            apply::apply(&store, &dir, &plan, &local, &node, when, &mut ahead)
        })
        .await??;
        self.save(|s| {
            s.applied = Some(Applied {
                seq: up.seq,
                tree: up.tree,
                node: up.node.clone(),
                time: up.time,
            })
        })?;
        (self.opts.say)(format!(
            "applied update {} (tree {}) from {}: {} written, {} removed, {} conflict copies",
            up.seq, up.tree, up.node, done.written, done.removed, done.conflicts
        ));
        Ok(())
    }

    /// The node's main loop; returns only on an error it cannot go on after.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let (_watcher, mut events) = watch(&self.opts.dir)?;
        tokio::spawn(self.clone().receive());
        tokio::spawn(self.clone().poll());
        // Scan at start: changes made while no node ran count too.
        let mut changes = Quiet::new(self.opts.quiet);
        changes.touch();
        let mut retry_at: Option<Instant> = None;
        let mut told = false;
        loop {
            if let Some(u) = self
                .pending()
                .filter(|_| retry_at.is_none_or(|t| Instant::now() >= t))
            {
                match self.apply_update(&u).await {
                    Ok(()) => {
                        retry_at = None;
                        changes.touch();
                    }
                    Err(e) => {
                        tracing::warn!(
                            "refused update {} from {} for channel {}: {e:#}; {} left as it was",
                            u.update.seq,
                            u.update.node,
                            self.opts.channel,
                            self.opts.dir.display()
                        );
                        retry_at = Some(Instant::now() + RETRY);
                    }
                }
                continue;
            }
            if changes.due() {
                changes.clear();
                // A newer update is merged before local changes are published,
                // unless fetching it failed: then they go out meanwhile.
                let over_pending = retry_at.is_some();
                if let Err(e) = self.publish_changes(&mut told, over_pending).await {
                    tracing::warn!("{}: {e:#}; trying again", self.opts.dir.display());
                    changes.touch();
                }
                continue;
            }
            let wait = [changes.due_at(), retry_at]
                .into_iter()
                .flatten()
                .min()
                .map_or(Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(Instant::now())
                });
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(()) = events.recv() => {
                    changes.touch();
                    while events.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
