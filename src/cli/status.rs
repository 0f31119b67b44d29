//! `cas status`: every channel, and the running node's figures.

use anyhow::Result;
use serde::Serialize;

use cas::sync::ChannelStatus;

use super::{print_json, Cli};

/// Every channel of the store; those `cas sync` runs for now with live figures.
pub(super) fn statuses(cli: &Cli, store: &cas::Store) -> Result<Vec<ChannelStatus>> {
    let running: Vec<ChannelStatus> = cli
        .daemon
        .iter()
        .flat_map(|d| d.syncs.iter().map(|n| n.status()))
        .collect();
    Ok(cas::sync::statuses(store, &running)?)
}

#[derive(Serialize)]
struct Status {
    channels: Vec<ChannelStatus>,
    /// The running `cas serve`'s or `cas sync`'s figures, when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<cas::engine::NodeStats>,
}

pub fn status(cli: &Cli, json: bool) -> Result<i32> {
    let store = cli.open_or_create(None)?;
    let channels = statuses(cli, &store)?;
    let node = cli.daemon.as_ref().map(|d| d.engine.node_stats());
    if json {
        print_json(&Status { channels, node })?;
        return Ok(0);
    }
    if let Some(n) = &node {
        let h = super::human;
        let limit = |l: u32| {
            if l == 0 {
                "none".to_string()
            } else {
                format!("{}/s", h(l.into()))
            }
        };
        outln!(
            "node (pid {}): up {}/s, down {}/s; sent {} ({} all time), received {} ({} all time)",
            std::process::id(),
            h(n.upload_speed),
            h(n.download_speed),
            h(n.uploaded),
            h(n.uploaded_all_time),
            h(n.downloaded),
            h(n.downloaded_all_time)
        );
        outln!(
            "  peers {}, limits up {} down {}{}; cpu {:.1} s, memory {}, store free {}",
            n.peers,
            limit(n.upload_limit),
            limit(n.download_limit),
            n.schedule
                .map_or(String::new(), |i| format!(" (schedule {i})")),
            n.cpu_seconds,
            h(n.memory_bytes),
            h(n.store_free_bytes)
        );
    }
    if channels.is_empty() {
        outln!("no channels: `cas channel new NAME` or `cas channel join NAME caspub-...`");
    }
    for c in channels {
        let seq = |s: Option<u64>| s.map_or("-".to_string(), |s| s.to_string());
        outln!(
            "{} ({}){}",
            c.name,
            if c.can_publish {
                "publisher"
            } else {
                "follower"
            },
            if c.running { ", syncing" } else { "" }
        );
        if let Some(d) = &c.dir {
            outln!("  directory: {d}");
        }
        outln!(
            "  newest update: {}, applied: {} (tree {})",
            seq(c.newest_seq),
            seq(c.applied_seq),
            c.applied_tree.map_or("-".to_string(), |t| t.to_hex())
        );
        outln!("  pieces: {}", super::human(c.piece_length.into()));
        if c.running {
            outln!("  peers: {}", c.peers.join(", "));
            outln!(
                "  received {}, sent {}",
                super::human(c.bytes_in),
                super::human(c.bytes_out)
            );
        }
    }
    Ok(0)
}
