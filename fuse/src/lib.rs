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
mod tests {
    use super::*;

    /// A two-level tree: / -> docs/ -> a.txt.
    struct Tiny;

    fn dir(ino: u64) -> Node {
        Node {
            ino,
            kind: NodeKind::Dir,
            mode: 0o755,
            mtime: SystemTime::UNIX_EPOCH,
        }
    }

    impl ReadOnlyTree for Tiny {
        fn lookup(&self, parent: u64, name: &[u8]) -> Result<Node, TreeError> {
            match (parent, name) {
                (ROOT, b"docs") => Ok(dir(2)),
                (2, b"a.txt") => self.node(3),
                _ => Err(TreeError::NotFound),
            }
        }
        fn node(&self, ino: u64) -> Result<Node, TreeError> {
            match ino {
                ROOT | 2 => Ok(dir(ino)),
                3 => Ok(Node {
                    ino,
                    kind: NodeKind::File { size: 5 },
                    mode: 0o644,
                    mtime: SystemTime::UNIX_EPOCH,
                }),
                _ => Err(TreeError::NotFound),
            }
        }
        fn children(&self, ino: u64) -> Result<Vec<(Vec<u8>, Node)>, TreeError> {
            match ino {
                ROOT => Ok(vec![(b"docs".to_vec(), dir(2))]),
                2 => Ok(vec![(b"a.txt".to_vec(), self.node(3)?)]),
                _ => Err(TreeError::NotFound),
            }
        }
        fn read(&self, _: u64, _: u64, _: u32) -> Result<Vec<u8>, TreeError> {
            Ok(b"hello".to_vec())
        }
    }

    #[test]
    fn resolve_walks_lookups_and_stops_at_files() {
        assert_eq!(resolve(&Tiny, b"/docs/a.txt").unwrap().ino, 3);
        assert_eq!(resolve(&Tiny, b"").unwrap().ino, ROOT);
        assert!(matches!(
            resolve(&Tiny, b"docs/a.txt/x"),
            Err(TreeError::NotFound)
        ));
        assert!(matches!(resolve(&Tiny, b"nope"), Err(TreeError::NotFound)));
    }
}
