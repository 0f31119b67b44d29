//! Tree manifests: the canonical description of an imported directory.
//!
//! A manifest is `CASTREE` + a version byte (1) + the postcard encoding of
//! [`Manifest`]. Entries are sorted by path bytes, parents before children, and every
//! directory (empty ones too) has an entry. The tree id is the BLAKE3 of these bytes.
//!
//! Decoding validates what an export or a mount relies on: relative, normalised paths
//! with no `.`/`..`/empty components, every parent a directory entry of the manifest
//! (so no entry sits below a symlink), no duplicates.

use serde::{Deserialize, Serialize};

use crate::{ContentId, InfoHash, TreeId};

/// First bytes of every manifest: name and format version.
pub const MAGIC: &[u8; 8] = b"CASTREE\x01";

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        content: ContentId,
        /// The file's own torrent; `None` for an empty file (no piece to hash).
        info_hash: Option<InfoHash>,
    },
    Symlink {
        /// The link target as stored by the file system, never followed.
        target: Vec<u8>,
    },
}

/// One path of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the tree root, components joined by `/`.
    pub path: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    pub kind: EntryKind,
}

impl Entry {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// A whole tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// Why manifest bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a cas tree manifest (unknown magic or version)")]
    Magic,
    #[error("manifest does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("manifest path {0:?} is not a clean relative path")]
    BadPath(String),
    #[error("manifest entries are not sorted or repeat at {0:?}")]
    Order(String),
    #[error("manifest entry {0:?} has no directory entry for its parent")]
    Orphan(String),
    #[error("manifest bytes are not in canonical form (trailing or over-long encodings)")]
    NotCanonical,
}

/// Checks one path: UTF-8 (as import requires), non-empty, relative, no empty, `.` or
/// `..` components, no NUL.
pub fn check_path(path: &[u8]) -> bool {
    !path.is_empty()
        && std::str::from_utf8(path).is_ok()
        && !path.contains(&0)
        && path
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

impl Manifest {
    /// Sorts entries canonically.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_stdvec(self).expect("manifest serialises"));
        out
    }

    /// The tree id of these bytes.
    pub fn id_of(bytes: &[u8]) -> TreeId {
        TreeId(*blake3::hash(bytes).as_bytes())
    }

    /// Decodes and validates manifest bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(ManifestError::Magic)?;
        let m: Manifest = postcard::from_bytes(body)?;
        let mut dirs = std::collections::HashSet::new();
        let mut prev: Option<&[u8]> = None;
        for e in &m.entries {
            if !check_path(&e.path) {
                return Err(ManifestError::BadPath(e.path_lossy()));
            }
            if prev.is_some_and(|p| p >= e.path.as_slice()) {
                return Err(ManifestError::Order(e.path_lossy()));
            }
            if let Some(slash) = e.path.iter().rposition(|&b| b == b'/') {
                if !dirs.contains(&e.path[..slash]) {
                    return Err(ManifestError::Orphan(e.path_lossy()));
                }
            }
            if e.kind == EntryKind::Dir {
                dirs.insert(e.path.as_slice());
            }
            prev = Some(&e.path);
        }
        // One tree, one byte string, one id: nothing trailing, no over-long varints.
        if m.encode() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(m)
    }

    /// Sum of file sizes.
    pub fn logical_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    pub fn find(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            kind,
        }
    }

    #[test]
    fn refuses_escapes_and_children_of_symlinks() {
        let link = EntryKind::Symlink {
            target: b"/etc".to_vec(),
        };
        let file = EntryKind::File {
            size: 0,
            content: ContentId([0; 32]),
            info_hash: None,
        };
        for bad in [
            vec![entry("../x", EntryKind::Dir)],
            vec![entry("/x", EntryKind::Dir)],
            vec![entry("a", link), entry("a/passwd", file.clone())],
            vec![entry("b", EntryKind::Dir), entry("a", EntryKind::Dir)],
        ] {
            let bytes = Manifest { entries: bad }.encode();
            assert!(Manifest::decode(&bytes).is_err());
        }
        let good = Manifest {
            entries: vec![entry("a", EntryKind::Dir), entry("a/f", file)],
        };
        assert_eq!(Manifest::decode(&good.encode()).unwrap(), good);
    }
}
