//! Liveness and garbage collection.
//!
//! Mark: refs name trees; a tree reaches its manifest torrent, its directory torrent
//! and every file torrent its manifest lists; pinned torrents are live by themselves;
//! a torrent reaches its pieces, and a download not yet complete reaches every stored
//! chunk whose SHA-1 is one of its pieces'. Sweep:
//! unreachable trees and torrents are removed, then index entries of unreachable
//! chunks, then packs holding dead bytes are compacted (live records copied to a new
//! pack, synced and re-indexed before the old pack is deleted). A chunk that anything
//! live reaches is never removed: it is only ever moved, and its old copy is deleted
//! after the new one is durable and indexed.

use std::collections::HashSet;

use serde::Serialize;

use super::Store;
use crate::manifest::EntryKind;
use crate::{ChunkId, Error, InfoHash, Result, TreeId};

/// What is reachable from the refs, and what is broken on the way.
#[derive(Debug, Default)]
pub struct Marked {
    pub trees: HashSet<TreeId>,
    pub torrents: HashSet<InfoHash>,
    pub chunks: HashSet<ChunkId>,
    /// Refs whose tree record is missing.
    pub dangling_refs: Vec<(String, TreeId)>,
    /// Live torrents whose record is missing, with who needs them.
    pub missing_torrents: Vec<(InfoHash, String)>,
    /// Trees whose manifest cannot be read, with the reason.
    pub broken_trees: Vec<(TreeId, String)>,
    /// Catalog records met on the way that do not decode, each with what is wrong
    /// (naming the file) and, for a torrent, who needs it.
    pub unreadable: Vec<(Record, String)>,
}

/// A catalog record, by its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    Ref(String),
    Tree(TreeId),
    Torrent(InfoHash),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Ref(_) => "ref",
            Record::Tree(_) => "tree record",
            Record::Torrent(_) => "torrent record",
        }
    }
}

/// Marks everything reachable from the refs.
pub fn mark(store: &Store) -> Result<Marked> {
    let mut m = Marked::default();
    let catalog = store.catalog();
    let (refs, bad) = catalog.refs_and_unreadable()?;
    for (name, e) in bad {
        m.unreadable.push((Record::Ref(name), e.to_string()));
    }
    for (name, tree) in refs {
        match catalog.tree(&tree) {
            Ok(Some(_)) => {
                m.trees.insert(tree);
            }
            Ok(None) => m.dangling_refs.push((name, tree)),
            Err(e @ Error::Corrupt { .. }) => {
                let e = format!("{e} (named by ref {name})");
                if !m.unreadable.iter().any(|(r, _)| *r == Record::Tree(tree)) {
                    m.unreadable.push((Record::Tree(tree), e));
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut want: Vec<(InfoHash, String)> = Vec::new();
    for tree in m.trees.clone() {
        let Some(record) = catalog.tree(&tree)? else {
            continue;
        };
        want.push((record.manifest, format!("manifest of tree {tree}")));
        if let Some(d) = record.directory {
            want.push((d, format!("directory torrent of tree {tree}")));
        }
        // The manifest's own chunks are marked through its torrent even when the
        // manifest cannot be read.
        match super::content::load_manifest(store, &tree) {
            Ok(manifest) => {
                for e in manifest.entries {
                    if let EntryKind::File {
                        info_hash: Some(ih),
                        ..
                    } = e.kind
                    {
                        want.push((ih, format!("{} in tree {tree}", e.path_lossy())));
                    }
                }
            }
            Err(e) => m.broken_trees.push((tree, e.to_string())),
        }
    }
    for ih in catalog.pins()? {
        want.push((ih, "a pin".to_string()));
    }
    for ih in catalog.downloads()? {
        let Some(bytes) = catalog.download(&ih)? else {
            continue;
        };
        // An unreadable download record keeps nothing; it cannot resume either.
        if let Ok(meta) = crate::meta::parse::Metainfo::parse(&bytes) {
            for sha1 in &meta.pieces {
                m.chunks.extend(store.chunks().index().by_sha1(sha1)?);
            }
        }
    }
    for (ih, who) in want {
        if !m.torrents.insert(ih) {
            continue;
        }
        match catalog.torrent(&ih) {
            Ok(Some(record)) => m.chunks.extend(record.pieces),
            // Being fetched (a lazy tree's files, say): its pieces are live as a download's.
            Ok(None) if catalog.is_downloading(&ih) => {}
            Ok(None) => m.missing_torrents.push((ih, who)),
            Err(e @ Error::Corrupt { .. }) => m
                .unreadable
                .push((Record::Torrent(ih), format!("{e} (needed by {who})"))),
            Err(e) => return Err(e),
        }
    }
    Ok(m)
}

/// What a collection did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub trees_removed: usize,
    pub torrents_removed: usize,
    pub chunks_removed: usize,
    pub packs_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Collects garbage. Refuses to run while anything live is broken (a dangling ref or
/// a missing torrent), since then liveness is not fully known.
pub fn collect(store: &mut Store) -> Result<GcReport> {
    store.commit()?;
    let marked = mark(store)?;
    if !marked.dangling_refs.is_empty()
        || !marked.missing_torrents.is_empty()
        || !marked.broken_trees.is_empty()
        || !marked.unreadable.is_empty()
    {
        return Err(Error::BrokenReferences);
    }
    let mut report = GcReport::default();
    let catalog = store.catalog();
    for tree in catalog.trees()? {
        if !marked.trees.contains(&tree) && catalog.remove_tree(&tree)? {
            report.trees_removed += 1;
        }
    }
    for ih in catalog.torrents()? {
        if !marked.torrents.contains(&ih) && catalog.remove_torrent(&ih)? {
            report.torrents_removed += 1;
        }
    }

    let swept = store.chunks_mut().sweep(&marked.chunks)?;
    report.chunks_removed = swept.chunks_removed;
    report.packs_rewritten = swept.packs_rewritten;
    report.bytes_before = swept.bytes_before;
    report.bytes_after = swept.bytes_after;
    Ok(report)
}
