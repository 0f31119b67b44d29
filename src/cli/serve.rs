//! `cas serve` (seed every torrent in the store until interrupted) and `cas get`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use cas::config::{Config, Resolver, ServeSection};
use cas::engine::get::{fetch, GetOptions};
use cas::engine::{Encryption, Engine, EngineOptions};
use cas::service::MountOptions;
use cas::webapi::{Credentials, WebError, WebOptions};

pub(super) use super::limits::LimitArgs;
pub(super) use super::run::{run_daemon, Plan};
use super::{human, print_json, Cli};

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
    /// Protocol encryption (MSE/PE) with peers: prefer (encrypted first, plaintext
    /// if that fails; both accepted), require (encrypted only), off (plaintext only)
    /// [default: prefer]
    #[arg(long, value_name = "POLICY")]
    encryption: Option<Encryption>,
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
    /// Serve qBittorrent's Web API and /metrics here (a bare port: on 127.0.0.1);
    /// the login is the config file's [http] username and password
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<String>,
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
    pub(super) fn plan(&self, config: &Config) -> Result<Plan> {
        let s = &config.sections.serve;
        let mut r = Resolver::new(config, "serve");
        let mut engine = self.net.resolve(&mut r, s, true);
        engine.peers = r.list("peer", &self.peers, &s.peer);
        let mount_at = r.optional("mount", self.mount.clone(), &s.mount);
        let watch = r.optional("watch", self.watch.clone(), &s.watch);
        let read_timeout = r.value("read-timeout", self.read_timeout, &s.read_timeout, 60);
        let direct_io = r.switch("direct-io", self.direct_io, &s.direct_io);
        let http = r.optional("http", self.http.clone(), &s.http);
        engine.limits = self.limits.resolve(config, &mut r);
        let web = match http {
            Some(addr) => Some(web_options(&addr, config, mount_at.clone())?),
            None => None,
        };
        Ok(Plan {
            engine,
            web,
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
        })
    }
}

/// The web API's options: `--http`'s address, `[http]`'s login and save paths.
fn web_options(addr: &str, config: &Config, mount: Option<PathBuf>) -> Result<WebOptions> {
    let h = &config.sections.http;
    let get = |i: &cas::config::Item<String>| i.as_ref().map(|s| s.get_ref().clone());
    let credentials = match get(&h.username) {
        Some(user) => Some(
            Credentials::new(
                &user,
                get(&h.password).as_deref(),
                get(&h.password_hash).as_deref(),
            )
            .map_err(WebError::Credentials)?,
        ),
        None if h.password.is_some() || h.password_hash.is_some() => {
            return Err(WebError::Credentials("a password without a username".into()).into())
        }
        None => None,
    };
    Ok(WebOptions {
        addr: cas::webapi::parse_address(addr)?,
        credentials,
        mount,
        save_paths: h
            .save_paths
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default(),
    })
}

impl From<&super::mount::MountArgs> for ServeArgs {
    fn from(m: &super::mount::MountArgs) -> Self {
        ServeArgs {
            mount: Some(m.mountpoint.clone()),
            watch: None,
            read_timeout: m.read_timeout,
            direct_io: m.direct_io,
            http: None,
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
        let lsd = r.switch("lsd", self.lsd, &s.lsd);
        let dht = r.switch("dht", self.dht, &s.dht);
        EngineOptions {
            seed_all,
            // LSD and the DHT announce only what the session runs: with either, every
            // torrent is kept active.
            on_demand: seed_all && !lsd && !dht,
            lsd,
            dht,
            listen: r.value("listen", self.listen, &s.listen, ANY_ADDRESS),
            bind_interface: r.optional(
                "bind-interface",
                self.bind_interface.clone(),
                &s.bind_interface,
            ),
            announce_ip: r.optional("announce-ip", self.announce_ip, &s.announce_ip),
            encryption: r.value(
                "encryption",
                self.encryption,
                &s.encryption,
                Encryption::Prefer,
            ),
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

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> Result<i32> {
    run_daemon(cli, args.plan(cli.config())?)
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
