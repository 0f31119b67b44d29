//! cas-fuse: the FUSE adapter that shows a cas store as a read-only filesystem.
//!
//! The adapter knows nothing of packs or sled: it translates FUSE requests into calls
//! on [`ReadOnlyTree`], which the `cas` library implements over its trees. This crate
//! depends on the library's interface only through that trait.
//!
//! - [`ReadOnlyTree`], [`Node`]: the interface a tree implements.
//! - [`mount`], [`Mount`]: mount a tree (fuser 0.18; as root a direct mount(2), no
//!   libfuse), unmount on drop; [`detach`] and [`is_stale_mount`] for mounts left behind.

mod adapter;
mod session;

use std::time::SystemTime;

pub use session::{detach, is_stale_mount, mount, Mount, MountError, MountOptions};

/// Inode number of the root directory, as FUSE expects.
pub const ROOT: u64 = 1;

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File { size: u64 },
    Symlink { target: Vec<u8> },
}

/// The attributes the mount reports for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub ino: u64,
    pub kind: NodeKind,
    /// Permission bits.
    pub mode: u32,
    pub mtime: SystemTime,
}

/// Why a read failed; the adapter turns every case into `EIO` or `ENOENT`.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("no such node")]
    NotFound,
    #[error("{0}")]
    Io(String),
}

/// A read-only tree of nodes, addressed by inode number.
pub trait ReadOnlyTree: Send + Sync + 'static {
    /// The node called `name` in directory `parent`.
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Node, TreeError>;
    /// The node with inode `ino`.
    fn node(&self, ino: u64) -> Result<Node, TreeError>;
    /// The entries of directory `ino`, in a stable order.
    fn children(&self, ino: u64) -> Result<Vec<(Vec<u8>, Node)>, TreeError>;
    /// Up to `len` bytes of file `ino` from `offset`; only verified bytes.
    fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>, TreeError>;

    /// The same as [`ReadOnlyTree::read`], but may lend bytes the tree already holds
    /// instead of copying them; the mount uses this one.
    fn read_shared(&self, ino: u64, offset: u64, len: u32) -> Result<ReadBytes, TreeError> {
        self.read(ino, offset, len).map(ReadBytes::Owned)
    }
}

/// Bytes read from a tree: owned, or a range of a buffer the tree shares.
pub enum ReadBytes {
    Owned(Vec<u8>),
    Shared {
        buf: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>,
        range: std::ops::Range<usize>,
    },
}

impl ReadBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ReadBytes::Owned(v) => v,
            ReadBytes::Shared { buf, range } => &(**buf).as_ref()[range.clone()],
        }
    }
}

/// Resolves a `/`-separated path from the root through [`ReadOnlyTree::lookup`].
pub fn resolve(tree: &dyn ReadOnlyTree, path: &[u8]) -> Result<Node, TreeError> {
    let mut node = tree.node(ROOT)?;
    for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        if node.kind != NodeKind::Dir {
            return Err(TreeError::NotFound);
        }
        node = tree.lookup(node.ino, part)?;
    }
    Ok(node)
}

#[cfg(test)]
mod tests;
