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

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{Error, Result, TreeId};

/// `dir` joined with `rel`, a path a sync is about to write, move or remove,
/// proven inside `dir` whatever an update says: `rel` is relative, each of its
/// components a plain name (not empty, `.` or `..`, no NUL), its first not the
/// working folder, and no parent that exists inside `dir` is a symlink or anything
/// but a directory. The check every path [`apply`] writes, moves or removes passes
/// first, for a clear error; the change itself is then made through directory
/// handles opened from `dir` down ([`crate::dirfd::Dir`]), so that it still holds
/// if another process swaps a directory for a symlink after the check.
pub fn inside(dir: &Path, rel: &[u8]) -> Result<PathBuf> {
    let refuse = |why: String| Error::BadInput {
        path: dir.join(OsStr::from_bytes(rel)),
        reason: format!(
            "refused: {why}; a sync writes nothing outside {}",
            dir.display()
        ),
    };
    if rel.is_empty() || rel.starts_with(b"/") {
        return Err(refuse("not a relative path".into()));
    }
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if let Some(bad) = parts
        .iter()
        .find(|c| c.is_empty() || **c == b"." || **c == b".." || c.contains(&0))
    {
        return Err(refuse(format!(
            "its component {:?} is not a plain name",
            String::from_utf8_lossy(bad)
        )));
    }
    if parts[0] == apply::WORK_DIR.as_bytes() {
        return Err(refuse(format!(
            "{} is cas's working folder",
            apply::WORK_DIR
        )));
    }
    let mut path = dir.to_path_buf();
    for (i, c) in parts.iter().enumerate() {
        path.push(OsStr::from_bytes(c));
        if i + 1 == parts.len() {
            break;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(format!(
                    "{} is a symbolic link, not written through",
                    path.display()
                )))
            }
            // A file where a parent should be: nothing below it is reached either.
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(path)
}

/// What `cas status` shows of every channel of the store: `running`'s figures for the
/// channels a node keeps now, what the store records for the others.
pub fn statuses(store: &crate::Store, running: &[ChannelStatus]) -> Result<Vec<ChannelStatus>> {
    let channels = crate::channel::Channels::of(store);
    let mut out = Vec::new();
    for name in channels.names()? {
        if let Some(s) = running.iter().find(|s| s.name == name) {
            out.push(s.clone());
            continue;
        }
        let channel = channels.get(&name)?;
        let state = channels.state(&name)?;
        let newest = state
            .newest
            .as_deref()
            .and_then(|b| crate::channel::SignedUpdate::decode(b).ok());
        out.push(ChannelStatus {
            name,
            public: channel.public.to_string(),
            can_publish: channel.secret.is_some(),
            dir: state.dir.map(|d| d.display().to_string()),
            node: state.node,
            newest_seq: newest.map(|u| u.update.seq),
            applied_seq: state.applied.as_ref().map(|a| a.seq),
            applied_tree: state.applied.as_ref().map(|a| a.tree),
            piece_length: crate::channel::cut_length(store, &channel, state.applied.as_ref()),
            ..Default::default()
        });
    }
    Ok(out)
}

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
