//! What the engine is told: how it meets peers, what to fetch, and how.

use std::net::SocketAddr;

/// How the engine meets peers.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Address to listen on; port 0 picks a free one. `[::]` listens on every IPv6
    /// and IPv4 address (every IPv4 one where the host has no IPv6).
    pub listen: SocketAddr,
    /// The network interface to listen and connect through only (SO_BINDTODEVICE:
    /// peers, trackers, LSD, DHT).
    pub bind_interface: Option<String>,
    /// The address trackers are told to give peers (else the one they see).
    pub announce_ip: Option<std::net::IpAddr>,
    /// uTP beside TCP, on the same port (UDP). `cas sync` keeps that UDP port for its
    /// update datagrams, so its engine has TCP only.
    pub utp: bool,
    /// BEP 14 Local Service Discovery.
    pub lsd: bool,
    /// The mainline DHT.
    pub dht: bool,
    /// DHT nodes to join through instead of the public routers (`host:port`).
    pub dht_bootstrap: Vec<String>,
    /// Trackers announced to for every torrent, besides the torrent's own.
    pub trackers: Vec<String>,
    /// Only peers in these networks may connect or be connected to (empty: any).
    pub allow: Vec<ipnet::IpNet>,
    /// Add every torrent of the store at start (`cas serve`), or none (`cas get`).
    pub seed_all: bool,
    /// With `seed_all`: only the active torrents are added at start, the others when
    /// a peer asks for one ([`super::activate`]).
    pub on_demand: bool,
    /// Peers to connect to for every torrent added, besides those found.
    pub peers: Vec<SocketAddr>,
    /// Rate and share limits.
    pub limits: super::Limits,
    /// BitTorrent protocol encryption (MSE/PE) with peers.
    pub encryption: Encryption,
}

pub use crate::config::Encryption;

impl Default for EngineOptions {
    /// A local engine: any free port on every address, TCP and uTP, no DHT, no LSD,
    /// no trackers, no limits, encryption preferred.
    fn default() -> Self {
        EngineOptions {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            bind_interface: None,
            announce_ip: None,
            utp: true,
            lsd: false,
            dht: false,
            dht_bootstrap: Vec::new(),
            trackers: Vec::new(),
            allow: Vec::new(),
            seed_all: false,
            on_demand: false,
            peers: Vec::new(),
            limits: super::Limits::default(),
            encryption: Encryption::Prefer,
        }
    }
}

/// What a torrent is added to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Every piece, in librqbit's order.
    Whole,
    /// Every piece, in an order steered from outside ([`order::Rarest`]): few
    /// requests outstanding per peer, so that a new order takes effect soon; added
    /// with no file selected, for [`Engine::select_all`] once it is steered.
    Steered,
    /// Only the pieces reads through the mount want: no file selected ([`lazy`]).
    Lazy,
}

/// What to fetch.
#[derive(Clone, Debug)]
pub enum Source {
    /// A .torrent file's bytes.
    Torrent(Vec<u8>),
    /// A magnet link.
    Magnet(String),
}

/// The longest magnet link taken.
const MAX_MAGNET: usize = 16 << 10;

/// A magnet link as librqbit may be given it: short, and without `so` (BEP 53
/// select-only), whose ranges librqbit expands into a list (`so=0-4000000000` would
/// ask for gigabytes); cas fetches whole torrents anyway.
pub fn safe_magnet(m: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        m.len() <= MAX_MAGNET,
        "magnet link longer than {MAX_MAGNET} bytes"
    );
    let Some(query) = m.strip_prefix("magnet:?") else {
        anyhow::bail!("not a magnet link (it must start with \"magnet:?\")");
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("so=") && !p.starts_with("so."))
        .collect();
    Ok(format!("magnet:?{}", kept.join("&")))
}
