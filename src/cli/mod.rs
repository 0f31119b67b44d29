//! The `cas` command line: argument parsing and one module per group of commands.
//! Everything here is presentation; the work is done by the library.

/// `println!` to the command's standard output (a client's, through `cas serve`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::cli::daemon::stdout(), $($t)*);
    }};
}

/// `eprintln!` to the command's standard error.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::cli::daemon::stderr(), $($t)*);
    }};
}

mod add;
mod config;
mod daemon;
mod import;
mod inspect;
mod limits;
mod maintain;
mod mount;
mod notify;
mod run;
mod serve;
mod status;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use cas::Store;

/// A content-addressed chunk store whose transport is BitTorrent.
#[derive(Parser, Debug)]
#[command(name = "cas", version, about, long_about = None)]
pub struct Cli {
    /// The store directory [default: $XDG_DATA_HOME/cas, or ~/.local/share/cas]
    #[arg(long, global = true, env = "CAS_STORE", value_name = "DIR")]
    store: Option<PathBuf>,

    /// The config file [default: $XDG_CONFIG_HOME/cas/config.toml, or
    /// ~/.config/cas/config.toml, when it exists]
    #[arg(
        long = "config",
        global = true,
        env = "CAS_CONFIG",
        value_name = "FILE"
    )]
    config_file: Option<PathBuf>,

    /// The config file as read, once `run` has read it.
    #[arg(skip)]
    loaded: Option<Arc<cas::config::Config>>,

    #[command(subcommand)]
    command: Command,

    /// Set when the command runs inside `cas serve` for a client.
    #[arg(skip)]
    daemon: Option<std::sync::Arc<daemon::Daemon>>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a store (import creates one too, with the default piece length)
    Init {
        /// Piece length of the torrents this store makes (power of two, 16K to 64M)
        #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1M")]
        piece_length: u32,
    },
    /// Store a directory and publish it as torrents; point a ref at its tree
    Import(import::ImportArgs),
    /// Write a .torrent: the directory torrent of a ref or tree, a file's (REF:path), or any info-hash
    Torrent {
        /// Ref, tree id, REF:path or info-hash
        target: String,
        /// Output file [default: standard output, when it is not a terminal]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The tree's manifest torrent instead of its directory torrent
        #[arg(long)]
        manifest: bool,
    },
    /// Print a magnet link (same targets as `torrent`)
    Magnet {
        target: String,
        #[arg(long)]
        manifest: bool,
    },
    /// List refs, or the files of a ref or tree
    Ls {
        /// Ref or tree id; without it, every ref
        target: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a stored file to standard output
    Cat {
        /// REF:path or TREE:path
        target: String,
    },
    /// Write a tree out as files (byte-identical, with modes, mtimes, symlinks)
    Export {
        /// Ref, tree id, or info-hash of a stored torrent
        target: String,
        /// Destination directory (new or empty)
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Chunks, bytes on disk, logical bytes, dedup ratio
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Remove a ref (or a tree and the refs naming it); `cas gc` then frees its chunks
    Rm { target: String },
    /// Remove what nothing live reaches and compact the packs
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every chunk; report damaged, missing and orphaned data
    Fsck {
        /// Drop what is bad and name the files that lost data
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Seed every torrent in the store to BitTorrent peers until interrupted
    Serve(serve::ServeArgs),
    /// Fetch a torrent or a tree into the store from BitTorrent peers
    Get(serve::GetArgs),
    /// Adopt a torrent made by any client: check its data (--data) and store it, or fetch it
    Add(add::AddArgs),
    /// Show the store as a read-only filesystem (refs/, trees/, blobs/, torrents/) until
    /// Ctrl-C, seeding meanwhile; pieces a read needs are fetched first
    Mount(mount::MountArgs),
    /// Make, join or export channels: signing keys for directories kept in sync
    Channel {
        #[command(subcommand)]
        command: sync::ChannelCommand,
    },
    /// Keep a directory the same on every node of a channel until interrupted,
    /// seeding meanwhile
    Sync(sync::SyncArgs),
    /// Per channel: newest update seen, update applied, peers, bytes in and out
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Show the settings in force (a running `cas serve`'s, else what `cas serve`
    /// and `cas sync` would use) and where each came from
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Maintain the chunk index
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Recreate the index from the pack files alone
    Rebuild {
        #[arg(long)]
        json: bool,
    },
}

/// Parses sizes such as `1M`, `512KiB`, `16k`, `1048576`.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit (use K or M)")),
    };
    let len = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    cas::meta::check_piece_length(len).map_err(|e| e.to_string())
}

impl Cli {
    /// The config file read (an empty one when there is none).
    fn config(&self) -> &cas::config::Config {
        static NONE: std::sync::OnceLock<cas::config::Config> = std::sync::OnceLock::new();
        self.loaded
            .as_deref()
            .unwrap_or_else(|| NONE.get_or_init(Default::default))
    }

    /// The config file `--config` (or `CAS_CONFIG`) names.
    fn config_path(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    fn store_path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.store {
            return Ok(p.clone());
        }
        if let Some(p) = &self.config().sections.store {
            return Ok(p.get_ref().clone());
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .context("no store given: pass --store DIR or set CAS_STORE (HOME is not set)")?;
        Ok(data.join("cas"))
    }

    /// Opens the store, making it first if it does not exist (`init`, `import`).
    fn open_or_create(&self, piece_length: Option<u32>) -> Result<Arc<Store>> {
        if let Some(d) = &self.daemon {
            return Ok(d.store.clone());
        }
        let path = self.store_path()?;
        Ok(Arc::new(Store::open(&path, piece_length)?))
    }

    /// Opens an existing store.
    fn open(&self) -> Result<Arc<Store>> {
        if let Some(d) = &self.daemon {
            return Ok(d.store.clone());
        }
        Ok(Arc::new(self.open_exclusive()?))
    }

    /// Opens an existing store for a command that needs it to itself.
    fn open_exclusive(&self) -> Result<Store> {
        if self.daemon.is_some() {
            anyhow::bail!(
                "this command needs the store to itself: stop `cas serve` (pid {}) first",
                std::process::id()
            );
        }
        let path = self.store_path()?;
        if !path.join("config.json").exists() {
            anyhow::bail!(
                "no cas store at {}: `cas init` or `cas import DIR` makes one (or pass --store DIR)",
                path.display()
            );
        }
        Ok(Store::open(&path, None)?)
    }
}

/// Prints a value as pretty JSON on standard output.
fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Human-readable byte counts.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Cli {
    /// Makes the command's relative paths absolute against `cwd` (the client's, when
    /// the command runs inside `cas serve`).
    fn absolutize(&mut self, cwd: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        match &mut self.command {
            Command::Import(a) => abs(&mut a.dir),
            Command::Torrent {
                output: Some(o), ..
            } => abs(o),
            Command::Export { dir, .. } => abs(dir),
            Command::Get(a) => a.absolutize(cwd),
            Command::Add(a) => a.absolutize(cwd),
            Command::Mount(m) => abs(&mut m.mountpoint),
            Command::Serve(s) => s.absolutize(cwd),
            Command::Sync(s) => s.absolutize(cwd),
            _ => {}
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn run() -> Result<i32> {
    let mut cli = Cli::parse();
    cli.loaded = Some(Arc::new(cas::config::Config::load(cli.config_path())?));
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Mount(_) | Command::Sync(_)
    ) {
        if let Some(code) = daemon::forward(&cli.store_path()?)? {
            return Ok(code);
        }
    }
    dispatch(&cli)
}

/// Runs a parsed command.
fn dispatch(cli: &Cli) -> Result<i32> {
    match &cli.command {
        Command::Init { piece_length } => {
            let store = cli.open_or_create(Some(*piece_length))?;
            outln!(
                "store {} (piece length {})",
                store.root().display(),
                human(store.config().piece_length.into())
            );
            Ok(0)
        }
        Command::Import(args) => import::run(cli, args),
        Command::Torrent {
            target,
            output,
            manifest,
        } => inspect::torrent(cli, target, output.as_deref(), *manifest),
        Command::Magnet { target, manifest } => inspect::magnet(cli, target, *manifest),
        Command::Ls { target, json } => inspect::ls(cli, target.as_deref(), *json),
        Command::Cat { target } => inspect::cat(cli, target),
        Command::Export { target, dir, json } => maintain::export(cli, target, dir, *json),
        Command::Stats { json } => inspect::stats(cli, *json),
        Command::Rm { target } => maintain::rm(cli, target),
        Command::Gc { json } => maintain::gc(cli, *json),
        Command::Fsck { repair, json } => maintain::fsck(cli, *repair, *json),
        Command::Serve(args) => serve::serve(cli, args),
        Command::Get(args) => serve::get_cmd(cli, args),
        Command::Add(args) => add::add(cli, args),
        Command::Mount(m) => serve::serve(cli, &m.into()),
        Command::Channel { command } => sync::channel(cli, command),
        Command::Sync(args) => sync::sync(cli, args),
        Command::Status { json } => status::status(cli, *json),
        Command::Config { command } => config::run(cli, command),
        Command::Index {
            command: IndexCommand::Rebuild { json },
        } => maintain::rebuild(cli, *json),
    }
}

/// A bytes progress bar on a local terminal ("VERB [====  ] 1 GiB/2 GiB ..."); hidden
/// when standard error is not a terminal or the output is JSON.
fn bytes_bar(verb: &str, json: bool) -> ProgressBar {
    if json || !daemon::stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {verb} [{{bar:30}}] {{binary_bytes}}/{{binary_total_bytes}} {{binary_bytes_per_sec}} eta {{eta}}"
        ))
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar
}
