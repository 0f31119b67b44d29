//! `cas serve` (seed every torrent in the store until interrupted) and `cas get`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use cas::config::{Config, Rate, Resolver, Seconds, ServeSection, Setting};
use cas::engine::get::{fetch, GetOptions};
use cas::engine::{Engine, EngineOptions, Limits};
use cas::service::{MountOptions, Service, ServiceOptions};
use cas::sync::node::SyncOptions;

use super::{human, notify, print_json, Cli};

/// How the engine meets peers. Each flag's value, when not given, comes from the
/// config file (`[serve]`), else its default.
#[derive(Args, Debug, Clone, Default)]
pub struct NetArgs {
    /// Address to listen on (port 0: a free port; [::] is every IPv6 and IPv4
    /// address) [default: [::]:0]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Listen and connect only through this network interface (trackers, LSD and
    /// DHT too)
    #[arg(long, value_name = "NAME")]
    bind_interface: Option<String>,
    /// Tell trackers to give peers this address for us (a NAT's outside address)
    #[arg(long, value_name = "ADDR")]
    announce_ip: Option<std::net::IpAddr>,
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

/// Rate and share limits, for `cas serve` and `cas sync` (`[limits]` in the config
/// file; alternative limits on a schedule are set there only).
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Upload limit over every torrent, bytes a second (512K, 1M; 0: none)
    #[arg(long, value_name = "RATE")]
    upload_limit: Option<Rate>,
    /// Download limit over every torrent, bytes a second
    #[arg(long, value_name = "RATE")]
    download_limit: Option<Rate>,
    /// Upload limit of each torrent, bytes a second
    #[arg(long, value_name = "RATE")]
    torrent_upload_limit: Option<Rate>,
    /// Download limit of each torrent, bytes a second
    #[arg(long, value_name = "RATE")]
    torrent_download_limit: Option<Rate>,
    /// A complete torrent stops seeding once it has sent this many times its size
    #[arg(long, value_name = "RATIO")]
    ratio_limit: Option<f64>,
    /// A complete torrent stops seeding after seeding this long (90m, 36h, 7d)
    #[arg(long, value_name = "TIME")]
    seed_time_limit: Option<Seconds>,
}

impl LimitArgs {
    /// The limits in force: these flags, else `[limits]` and `[[schedule]]`.
    pub(super) fn resolve(&self, config: &Config, r: &mut Resolver) -> Limits {
        let l = &config.sections.limits;
        r.section("limits");
        let upload = r.value("upload-limit", self.upload_limit, &l.upload_limit, Rate(0));
        let download = r.value(
            "download-limit",
            self.download_limit,
            &l.download_limit,
            Rate(0),
        );
        let torrent_upload = r.value(
            "torrent-upload-limit",
            self.torrent_upload_limit,
            &l.torrent_upload_limit,
            Rate(0),
        );
        let torrent_download = r.value(
            "torrent-download-limit",
            self.torrent_download_limit,
            &l.torrent_download_limit,
            Rate(0),
        );
        let ratio = r.optional("ratio-limit", self.ratio_limit, &l.ratio_limit);
        let seed_time = r.optional("seed-time-limit", self.seed_time_limit, &l.seed_time_limit);
        r.section("schedule");
        for (i, rule) in config.sections.schedule.iter().enumerate() {
            let v = rule.get_ref();
            let limit = |x: Option<Rate>| x.map_or("-".to_string(), |r| r.to_string());
            r.note(
                &(i + 1).to_string(),
                format!(
                    "{} {}-{} upload {} download {}",
                    v.days,
                    v.from,
                    v.to,
                    limit(v.upload_limit),
                    limit(v.download_limit)
                ),
                config.origin(rule),
            );
        }
        Limits {
            schedule: config.schedule(upload, download),
            torrent_upload,
            torrent_download,
            ratio,
            seed_time: seed_time.map(|s| Duration::from_secs(s.0)),
        }
    }
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Also show the store as a read-only filesystem on this directory (as `cas mount`)
    #[arg(long, value_name = "DIR")]
    mount: Option<PathBuf>,
    /// Add every .torrent dropped into this directory (renamed .added once added)
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// How long a read through the mount waits for a missing piece before EIO [default: 60]
    #[arg(long, value_name = "SECONDS")]
    read_timeout: Option<u64>,
    /// With --mount: open files with direct I/O (see `cas mount --help`)
    #[arg(long)]
    direct_io: bool,
    /// Connect to this peer for every torrent being fetched (repeatable)
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    peers: Vec<SocketAddr>,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

impl ServeArgs {
    pub(super) fn absolutize(&mut self, cwd: &std::path::Path) {
        for p in [&mut self.mount, &mut self.watch].into_iter().flatten() {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        }
    }

    /// What `cas serve` runs: these flags, else `[serve]` and `[limits]`, else the
    /// defaults.
    pub(super) fn plan(&self, config: &Config) -> Plan {
        let s = &config.sections.serve;
        let mut r = Resolver::new(config, "serve");
        let mut engine = self.net.resolve(&mut r, s, true);
        engine.peers = r.list("peer", &self.peers, &s.peer);
        let mount_at = r.optional("mount", self.mount.clone(), &s.mount);
        let watch = r.optional("watch", self.watch.clone(), &s.watch);
        let read_timeout = r.value("read-timeout", self.read_timeout, &s.read_timeout, 60);
        let direct_io = r.switch("direct-io", self.direct_io, &s.direct_io);
        engine.limits = self.limits.resolve(config, &mut r);
        Plan {
            engine,
            mount: mount_at.map(|at| MountOptions {
                at,
                read_timeout: Duration::from_secs(read_timeout),
                direct_io,
            }),
            watch,
            sync: None,
            limit_args: self.limits.clone(),
            allow_args: Some(self.net.allow.clone()),
            settings: r.settings,
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
            limits: LimitArgs::default(),
        }
    }
}

impl NetArgs {
    /// The engine's options: these flags, else `[serve]`'s keys, else the defaults.
    pub(super) fn resolve(
        &self,
        r: &mut Resolver,
        s: &ServeSection,
        seed_all: bool,
    ) -> EngineOptions {
        EngineOptions {
            seed_all,
            listen: r.value("listen", self.listen, &s.listen, ANY_ADDRESS),
            bind_interface: r.optional(
                "bind-interface",
                self.bind_interface.clone(),
                &s.bind_interface,
            ),
            announce_ip: r.optional("announce-ip", self.announce_ip, &s.announce_ip),
            lsd: r.switch("lsd", self.lsd, &s.lsd),
            dht: r.switch("dht", self.dht, &s.dht),
            dht_bootstrap: r.list("dht-bootstrap", &self.dht_bootstrap, &s.dht_bootstrap),
            trackers: r.list("tracker", &self.trackers, &s.tracker),
            allow: r.list("allow", &self.allow, &s.allow),
            ..Default::default()
        }
    }
}

/// Any free port on every IPv4 address (`cas sync`'s default).
pub(super) const ANY_PORT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// Any free port on every IPv6 and IPv4 address (`cas serve`'s and `cas get`'s).
pub(super) const ANY_ADDRESS: SocketAddr = SocketAddr::V6(std::net::SocketAddrV6::new(
    std::net::Ipv6Addr::UNSPECIFIED,
    0,
    0,
    0,
));

/// What `cas serve` or `cas sync` runs, resolved from the flags and the config file.
pub(super) struct Plan {
    pub engine: EngineOptions,
    pub mount: Option<MountOptions>,
    pub watch: Option<PathBuf>,
    pub sync: Option<SyncOptions>,
    /// The limit flags, to resolve again over a config file read again.
    pub limit_args: LimitArgs,
    /// `--allow` flags, to resolve again over `[serve]` on a reload (`cas serve`
    /// only: `cas sync`'s allow-list is read at start).
    pub allow_args: Option<Vec<ipnet::IpNet>>,
    /// Every value in force and where it came from (`cas config show`).
    pub settings: Vec<Setting>,
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
    run_daemon(cli, args.plan(cli.config()))
}

/// `cas serve`, and `cas sync` when the plan has a sync: the engine, the control
/// socket, then what the plan asks for, until SIGINT or SIGTERM; SIGHUP reads the
/// config file again (limits and schedule). Readiness and stopping are told to
/// systemd (`$NOTIFY_SOCKET`).
pub(super) fn run_daemon(cli: &Cli, plan: Plan) -> Result<i32> {
    let store = cli.open()?;
    let rt = runtime()?;
    let held = store.clone();
    let r = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Before the first line is printed: whoever reads it may signal us at once.
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let Plan {
            engine: options,
            mount,
            watch,
            sync,
            limit_args,
            allow_args,
            settings,
        } = plan;
        let mut service = Service::start(
            store.clone(),
            ServiceOptions {
                engine: options,
                sync: sync.clone(),
                watch,
                mount,
            },
        )
        .await?;
        let engine = service.engine().clone();
        let daemon = Arc::new(super::daemon::Daemon {
            store,
            engine: engine.clone(),
            rt: tokio::runtime::Handle::current(),
            syncs: service.syncs().to_vec(),
            settings: std::sync::Mutex::new(settings),
            config_file: cli.config().path.clone(),
        });
        super::daemon::listen(daemon.clone())?;
        let ready = match &sync {
            Some(opts) => format!(
                "syncing {} on channel {} at {}",
                opts.dir.display(),
                opts.channel,
                engine.listen_addr()
            ),
            None => format!(
                "seeding {} torrents on {}",
                engine.started_with(),
                engine.listen_addr()
            ),
        };
        outln!("{ready}");
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
        notify::send(&format!("READY=1\nSTATUS={ready}"));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    notify::reloading();
                    reload(cli, &limit_args, allow_args.as_deref(), &daemon).await;
                    notify::send("READY=1");
                }
                e = service.failed() => {
                    errln!("{e:#}");
                    std::process::exit(1);
                }
            }
        }
        notify::send("STOPPING=1");
        errln!("stopping");
        if let Some(at) = service.stop().await {
            errln!("unmounted {}", at.display());
        }
        anyhow::Ok(0)
    });
    // What was received is durable before the process ends; librqbit's tasks (and
    // blocking reads still running) go with it.
    held.commit()?;
    rt.shutdown_background();
    r
}

/// SIGHUP: the config file read again; its limits and schedule, and for `cas serve`
/// its allow-list (flags still win), replace the engine's. A file that does not
/// parse changes nothing.
async fn reload(
    cli: &Cli,
    limit_args: &LimitArgs,
    allow_args: Option<&[ipnet::IpNet]>,
    daemon: &super::daemon::Daemon,
) {
    let config = match Config::load(cli.config_path()) {
        Ok(c) => c,
        Err(e) => {
            errln!("reload: {e}; the settings in force are kept");
            return;
        }
    };
    let mut r = Resolver::new(&config, "serve");
    if let Some(flags) = allow_args {
        let allow = r.list("allow", flags, &config.sections.serve.allow);
        if let Err(e) = daemon.engine.set_allow(&allow).await {
            errln!("reload: the allow-list: {e:#}; the one in force is kept");
            r.settings.clear();
        }
    }
    daemon
        .engine
        .set_limits(limit_args.resolve(&config, &mut r));
    let mut settings = daemon.settings.lock().unwrap_or_else(|e| e.into_inner());
    // The schedule's periods may be fewer than before: all of them go.
    settings
        .retain(|s| !s.key.starts_with("schedule.") && !r.settings.iter().any(|n| n.key == s.key));
    settings.extend(std::mem::take(&mut r.settings));
    drop(settings);
    errln!(
        "reloaded {}",
        config
            .path
            .as_ref()
            .map_or("the limits (no config file)".to_string(), |p| p
                .display()
                .to_string())
    );
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
                let config = Config::default();
                let mut r = Resolver::new(&config, "get");
                let options = args.net.resolve(&mut r, &ServeSection::default(), false);
                let engine = Engine::start(store.clone(), options).await?;
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
