//! `cas sync DIR --channel NAME`: one directory kept the same on every node of a
//! channel.
//!
//! A node that holds the channel's secret key watches the directory; after a quiet
//! period it imports it and, if what it holds differs from the last tree applied,
//! publishes the next signed update naming the new tree. Every node asks its peers
//! for newer updates ([`wire`]), fetches the tree an update names through the engine
//! (pieces it holds are never asked for), and merges it into the directory
//! ([`merge`], [`apply`]): local changes made since the common ancestor are kept,
//! both-sided changes leave a conflict copy. [`node`] runs all of it.
//!
//! Peers are those the engine finds for the channel's own small torrent (named by
//! its public key, so every member seeds the same one): LSD on a LAN, a tracker, or
//! `--peer` hints.

pub mod ahead;
pub mod apply;
pub mod merge;
pub mod node;
mod watch;
pub mod wire;

use serde::Serialize;

use crate::TreeId;

/// What `cas status` shows of a channel.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelStatus {
    pub name: String,
    pub public: String,
    pub can_publish: bool,
    pub dir: Option<String>,
    pub node: Option<String>,
    /// The newest valid update seen.
    pub newest_seq: Option<u64>,
    /// The update the directory was brought to (or published from it).
    pub applied_seq: Option<u64>,
    pub applied_tree: Option<TreeId>,
    /// The piece length this node cuts the channel's next tree with.
    pub piece_length: u32,
    /// Whether `cas sync` runs for it now.
    pub running: bool,
    /// Peers of the channel known now (their BitTorrent addresses).
    pub peers: Vec<String>,
    /// Bytes received from peers (verified and stored) and sent to them since
    /// `cas sync` started, counted as they go.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
