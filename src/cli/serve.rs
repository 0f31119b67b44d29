//! `cas serve` (seed every torrent in the store until interrupted) and `cas get`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use cas::engine::get::{fetch, GetOptions};
use cas::engine::{Engine, EngineOptions};
use cas::service::{MountOptions, Service, ServiceOptions};
use cas::sync::node::SyncOptions;

use super::{human, print_json, Cli};

/// How the engine meets peers.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Address to listen on (port 0: a free port)
    #[arg(long, default_value = "0.0.0.0:0", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Find peers on the local network (BEP 14)
    #[arg(long)]
    lsd: bool,
    /// Use the mainline DHT
    #[arg(long)]
    dht: bool,
    /// With --dht: join through this node instead of the public routers (repeatable)
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
    /// Also announce every torrent to this tracker (repeatable)
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Only exchange data with peers in this network, e.g. 10.0.0.0/8 (repeatable)
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<ipnet::IpNet>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Also show the store as a read-only filesystem on this directory (as `cas mount`)
    #[arg(long, value_name = "DIR")]
    mount: Option<PathBuf>,
    /// Add every .torrent dropped into this directory (renamed .added once added)
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// How long a read through the mount waits for a missing piece before EIO
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    read_timeout: u64,
    /// With --mount: open files with direct I/O (see `cas mount --help`)
    #[arg(long)]
    direct_io: bool,
    /// Connect to this peer for every torrent being fetched (repeatable)
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    peers: Vec<SocketAddr>,
    #[command(flatten)]
    net: NetArgs,
}

impl ServeArgs {
    pub(super) fn absolutize(&mut self, cwd: &std::path::Path) {
        for p in [&mut self.mount, &mut self.watch].into_iter().flatten() {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        }
    }
}

impl ServeArgs {
    /// What `cas sync` runs: the engine and nothing else of `cas serve`'s.
    pub(super) fn for_sync(peers: &[SocketAddr]) -> ServeArgs {
        ServeArgs {
            mount: None,
            watch: None,
            read_timeout: 60,
            direct_io: false,
            peers: peers.to_vec(),
            net: NetArgs::default(),
        }
    }
}

impl Default for NetArgs {
    fn default() -> Self {
        NetArgs {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            lsd: false,
            dht: false,
            dht_bootstrap: Vec::new(),
            trackers: Vec::new(),
            allow: Vec::new(),
        }
    }
}

impl From<&super::mount::MountArgs> for ServeArgs {
    fn from(m: &super::mount::MountArgs) -> Self {
        ServeArgs {
            mount: Some(m.mountpoint.clone()),
            watch: None,
            read_timeout: m.read_timeout,
            direct_io: m.direct_io,
            peers: m.peers.clone(),
            net: m.net.clone(),
        }
    }
}

impl NetArgs {
    pub(super) fn options(&self, seed_all: bool) -> EngineOptions {
        EngineOptions {
            seed_all,
            listen: self.listen,
            lsd: self.lsd,
            dht: self.dht,
            dht_bootstrap: self.dht_bootstrap.clone(),
            trackers: self.trackers.clone(),
            allow: self.allow.clone(),
            peers: Vec::new(),
        }
    }
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A magnet link, a .torrent file, an info-hash, or a tree id known to the store
    target: String,
    /// Connect to this peer (repeatable)
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    peers: Vec<SocketAddr>,
    /// Then write the files out into this directory (new or empty)
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Give up after this many seconds (what was fetched stays and resumes)
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Fetch only what names the content (for a tree: its manifest); a mount
    /// (`cas serve --mount`, `cas mount`) fetches pieces as they are read
    #[arg(long, conflicts_with = "export")]
    lazy: bool,
    /// Point this ref at the tree fetched [default: the tree id]
    #[arg(long, value_name = "REF")]
    name: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
}

impl GetArgs {
    /// `cas add` without data: fetch the torrent and keep it.
    pub(super) fn for_add(target: &str, peers: &[SocketAddr], json: bool) -> GetArgs {
        GetArgs {
            target: target.to_string(),
            peers: peers.to_vec(),
            export: None,
            timeout: None,
            lazy: false,
            name: None,
            json,
            net: NetArgs::default(),
        }
    }

    /// Relative paths against the client's working directory.
    pub(super) fn absolutize(&mut self, cwd: &std::path::Path) {
        if let Some(e) = &mut self.export {
            if e.is_relative() {
                *e = cwd.join(&*e);
            }
        }
        let t = std::path::Path::new(&self.target);
        if !self.target.starts_with("magnet:") && t.is_relative() && cwd.join(t).is_file() {
            self.target = cwd.join(t).to_string_lossy().into_owned();
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> Result<i32> {
    run_daemon(cli, args, args.net.options(true), None)
}

/// `cas serve`, and `cas sync` when `sync` is given: the engine, the control socket,
/// then what `args` asks for, until SIGINT or SIGTERM.
pub(super) fn run_daemon(
    cli: &Cli,
    args: &ServeArgs,
    mut options: EngineOptions,
    sync: Option<SyncOptions>,
) -> Result<i32> {
    let store = cli.open()?;
    let rt = runtime()?;
    rt.block_on(async move {
        options.peers = args.peers.clone();
        // Before the first line is printed: whoever reads it may stop us at once.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mount = args.mount.as_ref().map(|at| MountOptions {
            at: at.clone(),
            read_timeout: Duration::from_secs(args.read_timeout),
            direct_io: args.direct_io,
        });
        let mut service = Service::start(
            store.clone(),
            ServiceOptions {
                engine: options,
                sync: sync.clone(),
                watch: args.watch.clone(),
                mount,
            },
        )
        .await?;
        let engine = service.engine().clone();
        super::daemon::listen(Arc::new(super::daemon::Daemon {
            store,
            engine: engine.clone(),
            rt: tokio::runtime::Handle::current(),
            syncs: service.syncs().to_vec(),
        }))?;
        match &sync {
            Some(opts) => outln!(
                "syncing {} on channel {} at {}",
                opts.dir.display(),
                opts.channel,
                engine.listen_addr()
            ),
            None => outln!(
                "seeding {} torrents on {}",
                engine.started_with(),
                engine.listen_addr()
            ),
        }
        if let (Some(at), true) = (service.mounted_at(), service.detached_stale_mount) {
            errln!(
                "{}: a mount left by a process that died (transport endpoint is not connected) \
                 was unmounted first",
                at.display()
            );
        }
        if let Some(at) = service.mounted_at() {
            outln!(
                "mounted {} on {} (read-only)",
                engine.store().root().display(),
                at.display()
            );
        }
        std::io::stdout().flush()?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            e = service.failed() => {
                errln!("{e:#}");
                std::process::exit(1);
            }
        }
        errln!("stopping");
        if let Some(at) = service.stop().await {
            errln!("unmounted {}", at.display());
        }
        Ok(0)
    })
}

pub fn get_cmd(cli: &Cli, args: &GetArgs) -> Result<i32> {
    if let Some(name) = &args.name {
        cas::catalog::check_ref_name(name)?;
    }
    let store = cli.open_or_create(None)?;
    let bar = super::bytes_bar("fetching", args.json);
    let opts = GetOptions {
        peers: args.peers.clone(),
        timeout: args.timeout.map(Duration::from_secs),
        lazy: args.lazy,
        swarm: None,
    };
    let progress = |have, want| {
        bar.set_length(want);
        bar.set_position(have);
    };
    let report = match &cli.daemon {
        Some(d) => d.rt.block_on(fetch(
            &d.engine,
            &args.target,
            &opts,
            args.name.as_deref(),
            &progress,
        )),
        None => {
            let rt = runtime()?;
            let r = rt.block_on(async {
                let engine = Engine::start(store.clone(), args.net.options(false)).await?;
                fetch(
                    &engine,
                    &args.target,
                    &opts,
                    args.name.as_deref(),
                    &progress,
                )
                .await
            });
            // Done once what was fetched is durable: the session is not stopped (its
            // stop sleeps a second), its tasks go with the process.
            store.commit()?;
            rt.shutdown_background();
            r
        }
    };
    bar.finish_and_clear();
    let report = report?;
    if let Some(dir) = &args.export {
        match &report.tree {
            Some(tree) => cas::export::export(&store, tree, dir)?,
            None => cas::export::export_torrent(&store, &report.torrents[0], dir)?,
        };
    }
    if args.json {
        print_json(&report)?;
        return Ok(0);
    }
    match &report.tree {
        Some(tree) if args.lazy => outln!(
            "tree {tree}: manifest fetched; {} file torrents fetched as they are read",
            report.torrents.len().saturating_sub(1)
        ),
        Some(tree) => outln!("tree {tree}: {} torrents", report.torrents.len()),
        None => outln!("torrent {}", report.torrents[0]),
    }
    outln!(
        "{} from peers, {} already in the store, {:.1} s",
        human(report.bytes_from_wire),
        human(report.bytes_in_store),
        report.seconds
    );
    if let Some(dir) = &args.export {
        outln!("exported to {}", dir.display());
    }
    Ok(0)
}
