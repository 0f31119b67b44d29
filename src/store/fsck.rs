//! `cas fsck`: re-hashes every chunk in every pack and checks the index and the
//! catalog against them.
//!
//! Findings: *damaged* chunks (the index points at bytes that are gone or do not hash
//! to their id), *incomplete* torrents (a live torrent needs a chunk the index lacks),
//! *dangling* refs and broken trees, and *orphaned* bytes (records nothing indexes,
//! torn writes), which are harmless and which `cas gc` reclaims. Catalog records
//! that do not decode (a ref, a tree or a torrent record) are reported as damaged,
//! each naming its file, and the other checks go on. With repair, bad index entries
//! and dangling refs are dropped, unreadable catalog records are moved to
//! `STORE/damaged/`, and the files that lost data are named.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::gc::{mark, Marked, Record};
use super::Store;
use crate::manifest::EntryKind;
use crate::{ChunkId, Error, InfoHash, Result};

/// The findings of a check.
#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    pub packs: usize,
    pub chunks: usize,
    pub bytes_checked: u64,
    /// Index entries whose bytes are missing or do not match: "chunk: what is wrong";
    /// and catalog records that do not decode: "unreadable ref: file: what is wrong".
    pub damaged: Vec<String>,
    /// Live torrents lacking chunks: "torrent (who needs it): N pieces missing".
    pub incomplete: Vec<String>,
    /// Refs naming no tree, and trees whose manifest cannot be read.
    pub dangling: Vec<String>,
    /// Records that nothing indexes, and unreadable byte ranges at pack ends.
    pub orphaned_records: usize,
    pub orphaned_bytes: u64,
    /// Chunks missing from the index that intact pack records still hold.
    pub recoverable: usize,
    /// With repair: what was done, and which files lost data.
    pub repaired: Vec<String>,
    pub lost_files: Vec<String>,
}

impl FsckReport {
    /// True when nothing is damaged, incomplete or dangling.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.incomplete.is_empty() && self.dangling.is_empty()
    }

    /// What the user should run next, if anything.
    pub fn hint(&self) -> Option<String> {
        if self.recoverable > 0 {
            Some(format!(
                "{} needed chunks are intact in the packs but not indexed: run `cas index rebuild`",
                self.recoverable
            ))
        } else if !self.is_clean() && self.repaired.is_empty() {
            Some("run `cas fsck --repair` to drop what is bad and list the files that lost data; re-import them to restore".into())
        } else if !self.is_clean() {
            Some("re-import the files listed as lost to restore them".into())
        } else if self.orphaned_bytes > 0 {
            Some("orphaned bytes are harmless; `cas gc` reclaims them".into())
        } else {
            None
        }
    }
}

/// Checks the whole store; with `repair`, also fixes what can be fixed.
pub fn fsck(store: &mut Store, repair: bool) -> Result<FsckReport> {
    // Every record in every pack re-hashed, every index entry against the records.
    let check = store.chunks().verify()?;
    let mut report = FsckReport {
        packs: check.packs,
        chunks: check.chunks,
        bytes_checked: check.bytes_checked,
        damaged: check.damaged.clone(),
        orphaned_records: check.orphaned_records,
        orphaned_bytes: check.orphaned_bytes,
        ..FsckReport::default()
    };
    let bad_ids: HashSet<ChunkId> = check.bad.iter().map(|(id, _)| *id).collect();

    // The catalog against the index.
    let marked = mark(store)?;
    let unreadable = unreadable_records(store, &marked)?;
    for (record, why) in &unreadable {
        report
            .damaged
            .push(format!("unreadable {}: {why}", record.kind()));
    }
    for (name, tree) in &marked.dangling_refs {
        report.dangling.push(format!(
            "ref {name} names tree {tree}, which is not in the store"
        ));
    }
    for (tree, why) in &marked.broken_trees {
        report.dangling.push(format!("tree {tree}: {why}"));
    }
    for (ih, who) in &marked.missing_torrents {
        report
            .dangling
            .push(format!("torrent {ih} ({who}) is not in the store"));
    }
    let mut lacking: HashMap<InfoHash, usize> = HashMap::new();
    for ih in &marked.torrents {
        let record = match store.catalog().torrent(ih) {
            Ok(Some(record)) => record,
            // Missing or unreadable: reported above.
            Ok(None) | Err(Error::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mut missing = 0;
        for id in &record.pieces {
            if bad_ids.contains(id) || store.chunks().index().get(id)?.is_none() {
                missing += 1;
                if check.intact.contains(id) && !bad_ids.contains(id) {
                    report.recoverable += 1;
                }
            }
        }
        if missing > 0 {
            lacking.insert(*ih, missing);
            report.incomplete.push(format!(
                "torrent {ih}: {missing} of {} pieces missing",
                record.pieces.len()
            ));
        }
    }

    if repair {
        // A file taken unread from a stat cache would not bring lost pieces back.
        store.forget_stat_caches()?;
        report.repaired = store.chunks_mut().repair(&check)?;
        // Unreadable records are moved aside, never guessed at.
        let mut lost_torrents = HashSet::new();
        for (record, why) in &unreadable {
            let catalog = store.catalog();
            let to = match record {
                Record::Ref(name) => catalog.set_aside_ref(name)?,
                Record::Tree(id) => catalog.set_aside_tree(id)?,
                Record::Torrent(ih) => {
                    if marked.torrents.contains(ih) {
                        lost_torrents.insert(*ih);
                    }
                    catalog.set_aside_torrent(ih)?
                }
            };
            report.repaired.push(format!(
                "moved the unreadable {} to {}: {why}",
                record.kind(),
                to.display()
            ));
        }
        // Refs naming no tree, including those whose tree record was just moved aside.
        for (name, tree) in store.catalog().refs_and_unreadable()?.0 {
            if store.catalog().tree(&tree)?.is_none() {
                store.catalog().remove_ref(&name)?;
                report.repaired.push(format!("removed dangling ref {name}"));
            }
        }
        report.lost_files = lost_files(store, &lacking, &lost_torrents)?;
    }
    Ok(report)
}

/// Every catalog record that does not decode: those `mark` met, then any other tree
/// or torrent record (dead ones too, which gc would remove unread).
fn unreadable_records(store: &Store, marked: &Marked) -> Result<Vec<(Record, String)>> {
    let mut out = marked.unreadable.clone();
    let catalog = store.catalog();
    let known: HashSet<Record> = out.iter().map(|(r, _)| r.clone()).collect();
    let mut check = |record: Record, read: Result<()>| match read {
        Ok(()) => Ok(()),
        Err(e @ Error::Corrupt { .. }) => {
            if !known.contains(&record) {
                out.push((record, e.to_string()));
            }
            Ok(())
        }
        Err(e) => Err(e),
    };
    for id in catalog.trees()? {
        check(Record::Tree(id), catalog.tree(&id).map(drop))?;
    }
    for ih in catalog.torrents()? {
        check(Record::Torrent(ih), catalog.torrent(&ih).map(drop))?;
    }
    Ok(out)
}

/// "ref:path" of every file (in every tree a ref names) whose torrent lacks pieces or
/// lost its record.
fn lost_files(
    store: &Store,
    lacking: &HashMap<InfoHash, usize>,
    lost: &HashSet<InfoHash>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (name, tree) in store.catalog().refs_and_unreadable()?.0 {
        let Some(record) = store.catalog().tree(&tree)? else {
            continue;
        };
        if lacking.contains_key(&record.manifest) || lost.contains(&record.manifest) {
            out.push(format!("{name}: the tree's manifest"));
            continue;
        }
        let Ok(manifest) = super::content::load_manifest(store, &tree) else {
            out.push(format!("{name}: the tree's manifest"));
            continue;
        };
        for e in &manifest.entries {
            if let EntryKind::File {
                info_hash: Some(ih),
                ..
            } = &e.kind
            {
                if let Some(n) = lacking.get(ih) {
                    out.push(format!("{name}:{} ({n} pieces)", e.path_lossy()));
                } else if lost.contains(ih) {
                    out.push(format!(
                        "{name}:{} (its torrent record was unreadable)",
                        e.path_lossy()
                    ));
                }
            }
        }
    }
    Ok(out)
}
