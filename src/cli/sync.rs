//! `cas channel ...`, `cas sync` and `cas status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use cas::channel::{Channel, Channels, SecretKey};
use cas::config::{Config, Resolver};
use cas::engine::{Encryption, EngineOptions};
use cas::sync::node::SyncOptions;

use super::serve::{LimitArgs, Plan, ANY_PORT};
use super::{print_json, Cli};

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Make a channel (a new key pair); prints the public key followers join with
    New {
        name: String,
        /// Piece length of the channel's trees on every node, whatever each store's
        /// (power of two, 16K to 64M)
        #[arg(long, value_name = "SIZE", value_parser = super::parse_size, default_value = "256K")]
        piece_length: u32,
        #[arg(long)]
        json: bool,
    },
    /// Follow a channel (caspub-...), or publish to it too (cassec-..., from `channel export`)
    ///
    /// The key is read from standard input or --key-file when not given; a secret key
    /// is never taken from the command line, where every local user can read it.
    Join {
        name: String,
        /// The channel's public key (caspub-...)
        key: Option<String>,
        /// Read the key (caspub-... or cassec-...) from this file
        #[arg(long, value_name = "FILE", conflicts_with = "key")]
        key_file: Option<PathBuf>,
    },
    /// Print the channel's secret key, for another node that should publish
    Export { name: String },
    /// List channels
    Ls {
        #[arg(long)]
        json: bool,
    },
}

/// `cas sync`'s flags; each one not given comes from `[sync]` in the config file,
/// else its default.
#[derive(Args, Debug, Default)]
pub struct SyncArgs {
    /// The directory kept the same on every node of the channel (made if missing)
    pub dir: Option<PathBuf>,
    /// The channel (`cas channel new` or `cas channel join`)
    #[arg(long)]
    channel: Option<String>,
    /// This node's name, in conflict copies' names [default: the host name]
    #[arg(long)]
    node: Option<String>,
    /// Wait this long after the last change before publishing [default: 1000]
    #[arg(long, value_name = "MS")]
    quiet_ms: Option<u64>,
    /// Refuse an update whose tree does not arrive in this long (tried again later)
    /// [default: 120]
    #[arg(long, value_name = "SECONDS")]
    fetch_timeout: Option<u64>,
    /// Ask this peer too (repeatable); LSD finds the others on the LAN
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    peers: Vec<SocketAddr>,
    /// Do not use Local Service Discovery (then give --peer or --tracker)
    #[arg(long)]
    no_lsd: bool,
    /// Address to listen on, TCP for BitTorrent and UDP for updates (port 0: a free
    /// one) [default: 0.0.0.0:0]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Also announce every torrent to this tracker (repeatable)
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Only exchange data and updates with peers in this network (repeatable)
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<ipnet::IpNet>,
    /// Protocol encryption (MSE/PE) with peers: prefer, require or off (see `cas
    /// serve --help`) [default: prefer]
    #[arg(long, value_name = "POLICY")]
    encryption: Option<Encryption>,
    #[command(flatten)]
    limits: LimitArgs,
}

impl SyncArgs {
    pub(super) fn absolutize(&mut self, cwd: &std::path::Path) {
        if let Some(d) = &mut self.dir {
            if d.is_relative() {
                *d = cwd.join(&*d);
            }
        }
    }

    /// What `cas sync` runs, as far as flags and the config file say: the
    /// directory and channel (when given), the engine's options, the settings.
    pub(super) fn resolve(&self, config: &Config) -> Resolved {
        let s = &config.sections.sync;
        let mut r = Resolver::new(config, "sync");
        let dir = r.optional("dir", self.dir.clone(), &s.dir);
        let channel = r.optional("channel", self.channel.clone(), &s.channel);
        let node = r.optional("node", self.node.clone(), &s.node);
        let quiet_ms = r.value("quiet-ms", self.quiet_ms, &s.quiet_ms, 1000);
        let fetch_timeout = r.value("fetch-timeout", self.fetch_timeout, &s.fetch_timeout, 120);
        let peers = r.list("peer", &self.peers, &s.peer);
        let no_lsd = r.switch("no-lsd", self.no_lsd, &s.no_lsd);
        let engine = EngineOptions {
            listen: r.value("listen", self.listen, &s.listen, ANY_PORT),
            // The channel's update datagrams use the listen port's UDP side.
            utp: false,
            lsd: !no_lsd,
            trackers: r.list("tracker", &self.trackers, &s.tracker),
            allow: r.list("allow", &self.allow, &s.allow),
            encryption: r.value(
                "encryption",
                self.encryption,
                &s.encryption,
                Encryption::Prefer,
            ),
            seed_all: true,
            peers: peers.clone(),
            limits: self.limits.resolve(config, &mut r),
            ..Default::default()
        };
        Resolved {
            dir,
            channel,
            node,
            quiet: Duration::from_millis(quiet_ms),
            fetch_timeout: Duration::from_secs(fetch_timeout),
            peers,
            engine,
            settings: r.settings,
        }
    }
}

/// [`SyncArgs::resolve`]'s answer.
pub(super) struct Resolved {
    pub dir: Option<PathBuf>,
    pub channel: Option<String>,
    pub node: Option<String>,
    pub quiet: Duration,
    pub fetch_timeout: Duration,
    pub peers: Vec<SocketAddr>,
    pub engine: EngineOptions,
    pub settings: Vec<cas::config::Setting>,
}

#[derive(Serialize)]
struct NewChannel<'a> {
    name: &'a str,
    public: String,
}

/// The longest key text read from standard input or a key file.
const MAX_KEY_TEXT: u64 = 4096;

/// The key `cas channel join` was given: from the command line (a public key only),
/// a file, or standard input. Checked before the store is opened.
fn join_key(cli: &Cli, key: Option<&str>, key_file: Option<&std::path::Path>) -> Result<String> {
    use std::io::Read;
    if let Some(key) = key {
        anyhow::ensure!(
            !key.trim().starts_with(cas::channel::SECRET_PREFIX),
            "a secret key on the command line can be read by every local user (ps, /proc) \
             and stays in shell history: give it on standard input \
             (`cas channel join NAME < FILE`) or with --key-file FILE"
        );
        return Ok(key.to_string());
    }
    let mut text = String::new();
    match key_file {
        Some(path) => {
            // Inside `cas serve` the daemon's working directory is not the client's.
            anyhow::ensure!(
                cli.daemon.is_none() || path.is_absolute(),
                "{}: cas serve runs on this store; give --key-file an absolute path",
                path.display()
            );
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_KEY_TEXT).read_to_string(&mut text))
                .with_context(|| format!("{}: cannot read the key", path.display()))?;
        }
        None => {
            anyhow::ensure!(
                cli.daemon.is_none(),
                "cas serve runs on this store and cannot read this command's standard input: \
                 give the key with --key-file FILE (an absolute path)"
            );
            std::io::stdin()
                .take(MAX_KEY_TEXT)
                .read_to_string(&mut text)
                .context("reading the key from standard input")?;
        }
    }
    let text = text.trim();
    anyhow::ensure!(
        !text.is_empty(),
        "no key given: pass caspub-... as an argument, or a key on standard input or in --key-file"
    );
    Ok(text.to_string())
}

pub fn channel(cli: &Cli, cmd: &ChannelCommand) -> Result<i32> {
    let joined = match cmd {
        ChannelCommand::Join { key, key_file, .. } => {
            Some(join_key(cli, key.as_deref(), key_file.as_deref())?)
        }
        _ => None,
    };
    let store = cli.open_or_create(None)?;
    let channels = Channels::of(&store);
    match cmd {
        ChannelCommand::New {
            name,
            piece_length,
            json,
        } => {
            let secret = SecretKey::generate();
            let public = secret.public();
            channels.create(
                name,
                &Channel {
                    public,
                    secret: Some(secret),
                    piece_length: Some(*piece_length),
                },
            )?;
            if *json {
                print_json(&NewChannel {
                    name,
                    public: public.to_string(),
                })?;
            } else {
                outln!("channel {name}: {public}");
                outln!("followers run: cas channel join {name} {public}");
            }
        }
        ChannelCommand::Join { name, .. } => {
            let key = joined.as_deref().unwrap_or_default();
            let channel = Channel::from_key(key)?;
            let can = if channel.secret.is_some() {
                "follows and publishes"
            } else {
                "follows"
            };
            channels.create(name, &channel)?;
            outln!("channel {name}: this node {can} {}", channel.public);
        }
        ChannelCommand::Export { name } => {
            let channel = channels.get(name)?;
            let secret = channel.secret.with_context(|| {
                format!("channel {name} has no secret key here: this node only follows it")
            })?;
            outln!("{}", secret.to_text());
        }
        ChannelCommand::Ls { json } => {
            let all = super::status::statuses(cli, &store)?;
            if *json {
                print_json(&all)?;
            } else {
                for c in all {
                    let role = if c.can_publish { "publish" } else { "follow" };
                    outln!("{}\t{role}\t{}", c.name, c.public);
                }
            }
        }
    }
    Ok(0)
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for its length; gethostname NUL-terminates within it
    // (the last byte stays 0 if the name is truncated).
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if r == 0 && !s.is_empty() => s.to_string(),
        _ => "node".to_string(),
    }
}

pub fn sync(cli: &Cli, args: &SyncArgs) -> Result<i32> {
    let plan = args.resolve(cli.config());
    let where_ = cli.config().path.as_ref().map_or(String::new(), |p| {
        format!(" or `dir` in [sync] of {}", p.display())
    });
    let dir = plan
        .dir
        .with_context(|| format!("no directory to sync: give DIR{where_}"))?;
    let channel = plan
        .channel
        .with_context(|| format!("no channel: give --channel NAME{where_}"))?;
    let dir =
        std::path::absolute(&dir).with_context(|| format!("{}: cannot resolve", dir.display()))?;
    if !dir.exists() {
        // A new follower's directory, as rsync makes its destination.
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    anyhow::ensure!(dir.is_dir(), "{}: not a directory", dir.display());
    let node = plan.node.clone().unwrap_or_else(host_name);
    cas::channel::check_node_name(&node).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    {
        // The channel must exist before the engine starts.
        let store = cli.open_or_create(None)?;
        Channels::of(&store).get(&channel)?;
    }
    let sync = SyncOptions {
        dir,
        channel,
        node,
        quiet: plan.quiet,
        fetch_timeout: plan.fetch_timeout,
        peers: plan.peers.clone(),
        allow: plan.engine.allow.clone(),
        say: Arc::new(|line| outln!("{line}")),
    };
    super::serve::run_daemon(
        cli,
        Plan {
            engine: plan.engine,
            mount: None,
            watch: None,
            sync: Some(sync),
            web: None,
            limit_args: args.limits.clone(),
            allow_args: None,
            settings: plan.settings,
        },
    )
}
