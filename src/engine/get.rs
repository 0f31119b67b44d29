//! `cas get`: fetch a torrent, or a whole tree, into the store.
//!
//! A target is a .torrent file, a magnet link, an info-hash, or the id of a tree whose
//! manifest the store already knows. A manifest torrent, once complete, is followed:
//! every file torrent it names is fetched too, and each file's content must hash to
//! the BLAKE3 the manifest gives. Pieces the store holds are never asked for.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::order::{Steering, Swarm};
use super::{Engine, Fetch, Source};
use crate::catalog::TorrentKind;
use crate::{read, InfoHash, TreeId};

/// How to fetch.
#[derive(Clone, Default)]
pub struct GetOptions {
    /// Peers to connect to, besides what trackers, DHT and LSD find.
    pub peers: Vec<SocketAddr>,
    /// Give up after this long without completing.
    pub timeout: Option<Duration>,
    /// Fetch only metadata (for a tree: the manifest, and each file torrent's info);
    /// pieces come when a mount reads them.
    pub lazy: bool,
    /// Other nodes fetching the same torrents: the pieces fewest of them hold are
    /// asked for first, so that they hold different pieces to trade
    /// ([`super::order`]).
    pub swarm: Option<Arc<dyn Swarm>>,
}

impl std::fmt::Debug for GetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOptions")
            .field("peers", &self.peers)
            .field("timeout", &self.timeout)
            .field("lazy", &self.lazy)
            .field("swarm", &self.swarm.is_some())
            .finish()
    }
}

/// What a fetch did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GetReport {
    /// Every torrent fetched, the first one named by the target.
    pub torrents: Vec<InfoHash>,
    /// The tree, if the target was (or named) a manifest.
    pub tree: Option<TreeId>,
    /// Bytes received from peers, verified and stored.
    pub bytes_from_wire: u64,
    /// Bytes of pieces the store already held.
    pub bytes_in_store: u64,
    /// Pieces received with a wrong hash (dropped).
    pub pieces_rejected: u64,
    pub seconds: f64,
}

/// How long to wait for a magnet's metadata before looking for peers again.
/// The first wait; each later one is twice the one before, up to [`METADATA_RETRY_MAX`].
/// Short: a connection whose first packets were dropped on a full link is tried
/// again by the kernel only after 1 s, then 3 s more, while asked again the magnet
/// tries every peer at once, and nodes that fetch the same tree together have the
/// metadata to give by then. With 4 s, one follower of eight fetching a tree waited
/// that long for one file's metadata while the source's link was full, and every
/// file with it (a fetch starts once all are added).
const METADATA_RETRY: Duration = Duration::from_secs(1);
const METADATA_RETRY_MAX: Duration = Duration::from_secs(60);
/// Torrents being added at once.
const ADDING_AT_ONCE: usize = 8;

/// Progress: bytes held and bytes wanted, over every torrent being fetched.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The info-hash a source names, when it can be told without fetching.
fn source_info_hash(s: &Source) -> Option<InfoHash> {
    match s {
        Source::Torrent(bytes) => crate::meta::parse::Metainfo::parse(bytes)
            .ok()
            .map(|m| m.info_hash),
        Source::Magnet(m) => {
            let at = m.find("xt=urn:btih:")? + "xt=urn:btih:".len();
            m.get(at..at + 40)?.parse().ok()
        }
    }
}

/// Turns a command-line target into what to fetch.
pub fn source(engine: &Engine, target: &str) -> anyhow::Result<Source> {
    if target.starts_with("magnet:") {
        // Refused here, not asked of peers again and again until the deadline.
        super::safe_magnet(target)?;
        return Ok(Source::Magnet(target.to_string()));
    }
    if is_hex(target, 40) {
        return Ok(Source::Magnet(format!(
            "magnet:?xt=urn:btih:{}",
            target.to_lowercase()
        )));
    }
    if is_hex(target, 64) {
        let tree: TreeId = target.parse().context("tree id")?;
        let record = engine.store.catalog().tree(&tree)?.with_context(|| {
            format!(
                "tree {tree} is not known here: fetch its manifest torrent first \
                 (`cas magnet --manifest REF` prints it on a node that has the tree)"
            )
        })?;
        return Ok(Source::Magnet(format!(
            "magnet:?xt=urn:btih:{}",
            record.manifest
        )));
    }
    let path = Path::new(target);
    let bytes = std::fs::read(path).with_context(|| {
        format!("{target}: not a magnet link, info-hash, tree id or readable .torrent file")
    })?;
    crate::meta::parse::Metainfo::parse(&bytes)
        .with_context(|| format!("{}: not a usable torrent", path.display()))?;
    Ok(Source::Torrent(bytes))
}

type Added = (InfoHash, std::sync::Arc<librqbit::ManagedTorrent>);

/// Adds the torrents (waiting for magnets' metadata), each ready when this returns.
async fn add_all(
    engine: &Engine,
    sources: Vec<Source>,
    opts: &GetOptions,
    deadline: Option<Instant>,
    lazy: bool,
) -> anyhow::Result<Vec<Added>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let fetch = match (lazy, opts.swarm.is_some()) {
        (true, _) => Fetch::Lazy,
        (false, true) => Fetch::Steered,
        (false, false) => Fetch::Whole,
    };
    // A tree of many files is as many magnets: their metadata is asked for a few at a
    // time, not one round trip after another.
    stream::iter(sources)
        .map(|s| add_one(engine, s, opts, deadline, fetch))
        .buffered(ADDING_AT_ONCE)
        .try_collect()
        .await
}

/// Adds one torrent and waits until librqbit has it ready. A magnet's metadata comes
/// from the first peers found, each tried once; when none answers in a while, it is
/// asked for again (trackers are asked again too).
async fn add_one(
    engine: &Engine,
    s: Source,
    opts: &GetOptions,
    deadline: Option<Instant>,
    fetch: Fetch,
) -> anyhow::Result<Added> {
    let mut retry = METADATA_RETRY;
    let added = loop {
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(retry),
            None => retry,
        };
        retry = (retry * 2).min(METADATA_RETRY_MAX);
        // Asked each time: a node that started moments ago learns its peers as it goes.
        let mut peers = opts.peers.clone();
        if let Some(swarm) = &opts.swarm {
            peers.extend(swarm.peers());
            peers.sort_unstable();
            peers.dedup();
        }
        let add = engine.add_with(s.clone(), &peers, fetch);
        match tokio::time::timeout(wait, add).await {
            // A magnet's peers may all have failed at once (a client resets the first
            // connection in ordinary use): ask them again until the deadline.
            Ok(Err(e))
                if matches!(s, Source::Magnet(_))
                    && deadline.is_none_or(|d| Instant::now() + wait < d) =>
            {
                tracing::info!("no metadata from the peers found ({e:#}); asking again");
                tokio::time::sleep(wait).await;
            }
            Ok(added) => break added?,
            Err(_) if deadline.is_none_or(|d| Instant::now() < d) => {
                tracing::info!("no metadata yet from the peers found; asking again");
            }
            Err(_) => bail!("timed out waiting for the torrent's metadata from peers"),
        }
    };
    added.1.wait_until_initialized().await?;
    Ok(added)
}

/// Adds the torrents and waits until the store holds all of them.
async fn fetch_all(
    engine: &Engine,
    sources: Vec<Source>,
    opts: &GetOptions,
    deadline: Option<Instant>,
    progress: Progress<'_>,
    report: &mut GetReport,
) -> anyhow::Result<Vec<InfoHash>> {
    // The counters of a torrent the engine already ran go on from earlier fetches.
    let counted = |ih: &InfoHash| {
        use std::sync::atomic::Ordering::Relaxed;
        engine.factory.counters(ih).map_or((0, 0, 0), |c| {
            let c = &c.counters;
            (
                c.stored.load(Relaxed),
                c.found.load(Relaxed),
                c.rejected.load(Relaxed),
            )
        })
    };
    let before: Vec<(InfoHash, (u64, u64, u64))> = sources
        .iter()
        .filter_map(source_info_hash)
        .map(|ih| (ih, counted(&ih)))
        .collect();
    let handles = add_all(engine, sources, opts, deadline, false).await?;
    let mut steering = match &opts.swarm {
        Some(swarm) => Some(Steering::start(engine, swarm.clone(), &handles).await?),
        None => None,
    };
    loop {
        let (mut have, mut want, mut done) = (0, 0, true);
        for (ih, h) in &handles {
            let stats = h.stats();
            if let Some(e) = &stats.error {
                bail!("torrent {ih}: {e}");
            }
            have += stats.progress_bytes;
            want += stats.total_bytes;
            // Complete once recorded (the downloads/ file goes last): the store, not
            // librqbit, says what is held. librqbit 9.1 can lose count of a piece the
            // store holds: one being hash-checked when its torrent is paused (a stalled
            // fetch is restarted) is neither queued again nor counted held.
            let catalog = engine.store.catalog();
            done &= catalog.has_torrent(ih) && !catalog.is_downloading(ih);
        }
        progress(have, want);
        if done {
            break;
        }
        if let Some(s) = &mut steering {
            s.tick(engine).await?;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!("timed out with {have} of {want} bytes stored; run again to resume");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for (ih, _) in handles {
        let (stored, found, rejected) = counted(&ih);
        let (s0, f0, r0) = before
            .iter()
            .find(|(b, _)| *b == ih)
            .map_or((0, 0, 0), |(_, c)| *c);
        report.bytes_from_wire += stored.saturating_sub(s0);
        report.bytes_in_store += found.saturating_sub(f0);
        report.pieces_rejected += rejected.saturating_sub(r0);
        report.torrents.push(ih);
        out.push(ih);
    }
    Ok(out)
}

/// Whether torrent `ih` carries a tree's manifest: one of cas's own whose first piece
/// starts as a manifest does (that piece is fetched to see).
async fn is_manifest(
    engine: &Engine,
    ih: &InfoHash,
    deadline: Option<Instant>,
) -> anyhow::Result<bool> {
    if let Some(r) = engine.store.catalog().torrent(ih)? {
        return Ok(matches!(r.kind, TorrentKind::Manifest { .. }));
    }
    let Some(bytes) = engine.store.catalog().download(ih)? else {
        return Ok(false);
    };
    let meta = crate::meta::parse::Metainfo::parse(&bytes)?;
    if !(meta.single_file && crate::store::finish::is_content_name(&meta.name)) {
        return Ok(false);
    }
    let piece = super::lazy::fetch_piece(engine, ih, 0);
    let id = match deadline {
        Some(d) => tokio::time::timeout(d.saturating_duration_since(Instant::now()), piece)
            .await
            .context("timed out waiting for the torrent's first piece")??,
        None => piece.await?,
    };
    Ok(engine
        .store
        .get(&id)?
        .bytes()
        .starts_with(crate::manifest::MAGIC))
}

/// Fetches `target` (and, for a tree, every file in it) into the store.
/// [`get`], then what a user's fetch keeps: a tree under a ref (`name`, else its id),
/// whose torrents then need no pins; a torrent alone stays pinned.
pub async fn fetch(
    engine: &Engine,
    target: &str,
    opts: &GetOptions,
    name: Option<&str>,
    progress: Progress<'_>,
) -> anyhow::Result<GetReport> {
    if let Some(name) = name {
        crate::catalog::check_ref_name(name)?;
    }
    let report = get(engine, target, opts, progress).await?;
    if let Some(tree) = &report.tree {
        engine.store().keep_tree(tree, &report.torrents, name)?;
    }
    Ok(report)
}

pub async fn get(
    engine: &Engine,
    target: &str,
    opts: &GetOptions,
    progress: Progress<'_>,
) -> anyhow::Result<GetReport> {
    let start = Instant::now();
    let deadline = opts.timeout.map(|t| start + t);
    let mut report = GetReport::default();
    let first = source(engine, target)?;
    if opts.lazy {
        // A tree's manifest is fetched whole; anything else only as metadata.
        let (ih, _) = add_all(engine, vec![first.clone()], opts, deadline, true).await?[0];
        if !is_manifest(engine, &ih, deadline).await? {
            report.torrents.push(ih);
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
    }
    let ih = fetch_all(engine, vec![first], opts, deadline, progress, &mut report).await?[0];
    let record = read::torrent(&engine.store, &ih)?;
    let TorrentKind::Manifest { tree } = record.kind else {
        // Kept for its own sake until `cas rm`.
        engine.store.catalog().pin(&ih)?;
        report.seconds = start.elapsed().as_secs_f64();
        return Ok(report);
    };
    {
        report.tree = Some(tree);
        let manifest = read::load_manifest(&engine.store, &tree)?;
        let mut wanted = Vec::new();
        for e in &manifest.entries {
            if let crate::manifest::EntryKind::File {
                info_hash: Some(ih),
                ..
            } = &e.kind
            {
                if !wanted.contains(ih) {
                    wanted.push(*ih);
                }
            }
        }
        let sources = wanted
            .iter()
            .map(|ih| Source::Magnet(format!("magnet:?xt=urn:btih:{ih}")))
            .collect();
        if opts.lazy {
            let lazy: Vec<Source> = wanted
                .iter()
                .filter(|ih| !engine.store.catalog().has_torrent(ih))
                .map(|ih| Source::Magnet(format!("magnet:?xt=urn:btih:{ih}")))
                .collect();
            for (ih, _) in add_all(engine, lazy, opts, deadline, true).await? {
                report.torrents.push(ih);
            }
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
        fetch_all(engine, sources, opts, deadline, progress, &mut report).await?;
        for e in &manifest.entries {
            if let crate::manifest::EntryKind::File {
                content,
                info_hash: Some(ih),
                ..
            } = &e.kind
            {
                let r = read::torrent(&engine.store, ih)?;
                if r.kind != (TorrentKind::File { content: *content }) {
                    bail!(
                        "{}: torrent {ih} does not carry the content the manifest names",
                        e.path_lossy()
                    );
                }
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
