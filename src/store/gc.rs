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

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::pack::{self, pack_file_name};
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
}

/// Marks everything reachable from the refs.
pub fn mark(store: &Store) -> Result<Marked> {
    let mut m = Marked::default();
    let catalog = store.catalog();
    for (name, tree) in catalog.refs()? {
        if catalog.tree(&tree)?.is_none() {
            m.dangling_refs.push((name, tree));
        } else {
            m.trees.insert(tree);
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
        match crate::read::load_manifest(store, &tree) {
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
                m.chunks.extend(store.index().by_sha1(sha1)?);
            }
        }
    }
    for (ih, who) in want {
        if !m.torrents.insert(ih) {
            continue;
        }
        match catalog.torrent(&ih)? {
            Some(record) => m.chunks.extend(record.pieces),
            // Being fetched (a lazy tree's files, say): its pieces are live as a download's.
            None if catalog.is_downloading(&ih) => {}
            None => m.missing_torrents.push((ih, who)),
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

fn pack_bytes(store: &Store) -> Result<u64> {
    let dir = store.packs_dir();
    let mut total = 0;
    for n in store.pack_numbers()? {
        let p = dir.join(pack_file_name(n));
        total += std::fs::metadata(&p)
            .map_err(Error::io(&p, "stat pack"))?
            .len();
    }
    Ok(total)
}

/// Collects garbage. Refuses to run while anything live is broken (a dangling ref or
/// a missing torrent), since then liveness is not fully known.
pub fn collect(store: &mut Store) -> Result<GcReport> {
    store.commit()?;
    let marked = mark(store)?;
    if !marked.dangling_refs.is_empty()
        || !marked.missing_torrents.is_empty()
        || !marked.broken_trees.is_empty()
    {
        return Err(Error::Invalid(
            "the store has broken references; run `cas fsck` (and `cas fsck --repair`) before `cas gc`".into(),
        ));
    }
    let mut report = GcReport {
        bytes_before: pack_bytes(store)?,
        ..GcReport::default()
    };
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

    // Drop index entries of dead chunks; note live records per pack.
    let mut batch = super::index::IndexBatch::default();
    let mut live_by_pack: BTreeMap<u32, Vec<(u64, ChunkId)>> = BTreeMap::new();
    let mut live_bytes: HashMap<u32, u64> = HashMap::new();
    for item in store.index().entries() {
        let (id, entry) = item?;
        if marked.chunks.contains(&id) {
            live_by_pack
                .entry(entry.at.pack)
                .or_default()
                .push((entry.at.offset, id));
            *live_bytes.entry(entry.at.pack).or_default() +=
                pack::RECORD_HEADER_LEN as u64 + u64::from(entry.stored);
        } else {
            batch.remove(id, &entry);
            report.chunks_removed += 1;
        }
    }
    store.index().apply(batch)?;
    store.index().flush()?;

    // Compact every pack with dead bytes into a new pack.
    let dir = store.packs_dir();
    let mut to_delete = Vec::new();
    let mut started = false;
    for n in store.pack_numbers()? {
        if Some(n) == store.current_pack() {
            continue;
        }
        let path = dir.join(pack_file_name(n));
        let len = std::fs::metadata(&path)
            .map_err(Error::io(&path, "stat pack"))?
            .len();
        let live = live_bytes.get(&n).copied().unwrap_or(0);
        if len <= pack::PACK_HEADER_LEN + live {
            continue;
        }
        if let Some(records) = live_by_pack.get_mut(&n) {
            records.sort_unstable();
            if !started {
                store.start_new_pack()?;
                started = true;
            }
            for (_, id) in records.iter() {
                let chunk = store.get(id)?;
                store.relocate(&chunk)?;
            }
            store.commit()?;
        }
        to_delete.push(n);
    }
    store.commit()?;
    let mut batch = super::index::IndexBatch::default();
    for n in &to_delete {
        batch.remove_pack(*n);
    }
    store.index().apply(batch)?;
    store.index().flush()?;
    for n in &to_delete {
        let path = dir.join(pack_file_name(*n));
        std::fs::remove_file(&path).map_err(Error::io(&path, "remove pack"))?;
        report.packs_rewritten += 1;
    }
    if !to_delete.is_empty() {
        super::sync_dir(&dir)?;
        store.drop_readers();
    }
    report.bytes_after = pack_bytes(store)?;
    Ok(report)
}
