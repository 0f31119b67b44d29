//! Commands that change or check the store: `export`, `rm`, `gc`, `fsck`, `index rebuild`.

use std::path::Path;

use anyhow::{bail, Result};

use cas::read::{resolve, Target};
use cas::remove::Removed;

use super::{human, print_json, Cli};

pub fn export(cli: &Cli, target: &str, dir: &Path, json: bool) -> Result<i32> {
    let store = cli.open()?;
    let report = match resolve(&store, target)? {
        Target::Tree { id, .. } => cas::export::export(&store, &id, dir)?,
        Target::Torrent(ih) => cas::export::export_torrent(&store, &ih, dir)?,
        Target::File { .. } => bail!("{target}: give a ref, tree id or info-hash, not a file"),
    };
    if json {
        print_json(&report)?;
    } else {
        outln!(
            "exported {} files, {} directories, {} symlinks ({}) to {}",
            report.files,
            report.dirs,
            report.symlinks,
            human(report.bytes),
            dir.display()
        );
    }
    Ok(0)
}

pub fn rm(cli: &Cli, target: &str) -> Result<i32> {
    let store = cli.open()?;
    match cas::remove::remove(&store, target)? {
        Removed::Ref(name) => {
            outln!("removed ref {name}; `cas gc` frees what nothing else uses")
        }
        Removed::Tree { id, refs } => {
            for name in refs {
                outln!("removed ref {name}");
            }
            outln!("removed tree {id}; `cas gc` frees what nothing else uses");
        }
        Removed::Torrent(ih) => {
            outln!("removed torrent {ih}; `cas gc` frees what nothing else uses")
        }
    }
    Ok(0)
}

pub fn gc(cli: &Cli, json: bool) -> Result<i32> {
    let mut store = cli.open_exclusive()?;
    let r = cas::store::gc::collect(&mut store)?;
    if json {
        print_json(&r)?;
    } else {
        outln!(
            "removed {} trees, {} torrents, {} chunks; rewrote {} packs; {} -> {}",
            r.trees_removed,
            r.torrents_removed,
            r.chunks_removed,
            r.packs_rewritten,
            human(r.bytes_before),
            human(r.bytes_after)
        );
    }
    Ok(0)
}

pub fn fsck(cli: &Cli, repair: bool, json: bool) -> Result<i32> {
    let mut store = cli.open_exclusive()?;
    let r = cas::store::fsck::fsck(&mut store, repair)?;
    let clean = r.is_clean();
    if json {
        print_json(&r)?;
    } else {
        outln!(
            "checked {} chunks ({}) in {} packs",
            r.chunks,
            human(r.bytes_checked),
            r.packs
        );
        for (label, list) in [
            ("damaged", &r.damaged),
            ("incomplete", &r.incomplete),
            ("dangling", &r.dangling),
            ("repaired", &r.repaired),
            ("lost data", &r.lost_files),
        ] {
            for line in list {
                outln!("{label}: {line}");
            }
        }
        if r.orphaned_records > 0 || r.orphaned_bytes > 0 {
            outln!(
                "orphaned: {} unindexed records, {} unreadable bytes",
                r.orphaned_records,
                r.orphaned_bytes
            );
        }
        if clean {
            outln!("no errors found");
        }
    }
    if let Some(hint) = r.hint() {
        errln!("hint: {hint}");
    }
    Ok(if clean { 0 } else { 1 })
}

pub fn rebuild(cli: &Cli, json: bool) -> Result<i32> {
    let r = match cli.open_exclusive() {
        Ok(mut store) => cas::chunks::rebuild::rebuild(store.chunks_mut())?,
        // An index that does not open is what a rebuild is for.
        Err(e) if e.downcast_ref().is_some_and(cas::chunks::index::is_damage) => {
            cas::chunks::rebuild::rebuild_damaged(&cli.store_path()?)?
        }
        Err(e) => return Err(e),
    };
    // The packs alone do not say which pieces are padded: the directory torrents do.
    let store = cli.open_exclusive()?;
    cas::store::migrate::padded_pieces(&store)?;
    // Chunks of damaged records are gone: the next import reads every file again.
    store.forget_stat_caches()?;
    drop(store);
    if json {
        print_json(&r)?;
    } else {
        outln!(
            "indexed {} chunks from {} packs; skipped {} damaged records and {} unreadable bytes",
            r.chunks,
            r.packs,
            r.damaged_records,
            r.unreadable_bytes
        );
        for p in &r.unreadable_packs {
            outln!("unreadable pack: {p}");
        }
        if let Some(p) = &r.damaged_index_moved_to {
            outln!("moved the damaged index aside to {}", p.display());
        }
    }
    Ok(0)
}
