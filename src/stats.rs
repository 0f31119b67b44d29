//! `cas stats`: how much the store holds and what deduplication saves.

use serde::Serialize;

use crate::store::{pack, Store};
use crate::{Error, Result};

/// Store-wide figures.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub refs: usize,
    pub trees: usize,
    pub torrents: usize,
    pub chunks: usize,
    /// Bytes of all pack files on disk.
    pub physical_bytes: u64,
    /// Sum of the lengths of all stored chunks.
    pub chunk_bytes: u64,
    /// Sum of the file sizes of every tree a ref names (a tree named twice counts once).
    pub logical_bytes: u64,
    /// `logical_bytes / physical_bytes`.
    pub dedup_ratio: f64,
}

pub fn stats(store: &Store) -> Result<Stats> {
    let mut s = Stats::default();
    let refs = store.catalog().refs()?;
    s.refs = refs.len();
    s.trees = store.catalog().trees()?.len();
    s.torrents = store.catalog().torrents()?.len();
    let mut seen = std::collections::HashSet::new();
    for (_, tree) in refs {
        if seen.insert(tree) {
            s.logical_bytes += crate::read::load_manifest(store, &tree)?.logical_bytes();
        }
    }
    for item in store.index().entries() {
        let (_, entry) = item?;
        s.chunks += 1;
        s.chunk_bytes += u64::from(entry.len);
    }
    let dir = store.packs_dir();
    for n in store.pack_numbers()? {
        let p = dir.join(pack::pack_file_name(n));
        s.physical_bytes += std::fs::metadata(&p)
            .map_err(Error::io(&p, "stat pack"))?
            .len();
    }
    s.dedup_ratio = if s.physical_bytes == 0 {
        1.0
    } else {
        s.logical_bytes as f64 / s.physical_bytes as f64
    };
    Ok(s)
}
