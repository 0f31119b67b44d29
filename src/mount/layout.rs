//! How trees and torrents are laid out as directories: each directory's children,
//! worked out once per manifest or torrent.

use std::collections::HashMap;
use std::sync::Arc;

use super::content::TorrentView;
use crate::manifest::Manifest;

/// The children of each directory of a list of paths whose parents come first:
/// `None` is the root, else the index of the parent's path.
pub(super) fn children_of<'a>(
    paths: impl Iterator<Item = &'a [u8]>,
) -> HashMap<Option<usize>, Vec<usize>> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, path) in paths.enumerate() {
        let parent = path
            .iter()
            .rposition(|&b| b == b'/')
            .and_then(|slash| index.get(&path[..slash]).copied());
        children.entry(parent).or_default().push(i);
        index.insert(path, i);
    }
    children
}

pub(super) fn last_component(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(slash) => &p[slash + 1..],
        None => p,
    }
}

/// A manifest with each directory's children worked out.
pub(super) struct Loaded {
    pub manifest: Manifest,
    pub children: HashMap<Option<usize>, Vec<usize>>,
}

impl Loaded {
    pub fn new(manifest: Manifest) -> Self {
        let children = children_of(manifest.entries.iter().map(|e| e.path.as_slice()));
        Loaded { manifest, children }
    }

    pub fn name(&self, i: usize) -> &[u8] {
        last_component(&self.manifest.entries[i].path)
    }
}

/// A torrent's files as a directory tree (pad files left out).
pub(super) struct Layout {
    pub view: Arc<TorrentView>,
    /// Paths; `Some(file index)` for a file, `None` for a directory.
    pub entries: Vec<(Vec<u8>, Option<usize>)>,
    pub children: HashMap<Option<usize>, Vec<usize>>,
}

impl Layout {
    pub fn new(view: Arc<TorrentView>) -> Self {
        let mut entries: Vec<(Vec<u8>, Option<usize>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut files: Vec<(Vec<u8>, usize)> = Vec::new();
        for (i, f) in view.meta.files.iter().enumerate() {
            if !f.pad {
                // A multi-file torrent's files sit in a directory of its name.
                let path = match view.meta.single_file {
                    true => f.path.join("/"),
                    false => format!("{}/{}", view.meta.name, f.path.join("/")),
                };
                files.push((path.into_bytes(), i));
            }
        }
        files.sort();
        for (path, i) in files {
            // Parents first: every directory on the way gets an entry once.
            for (at, _) in path.iter().enumerate().filter(|(_, &b)| b == b'/') {
                if seen.insert(path[..at].to_vec()) {
                    entries.push((path[..at].to_vec(), None));
                }
            }
            if seen.insert(path.clone()) {
                entries.push((path, Some(i)));
            }
        }
        let children = children_of(entries.iter().map(|(p, _)| p.as_slice()));
        Layout {
            view,
            entries,
            children,
        }
    }
}
