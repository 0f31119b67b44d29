//! Read-only commands: `ls`, `cat`, `torrent`, `magnet`, `stats`.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use cas::catalog::TorrentRecord;
use cas::manifest::EntryKind;
use cas::read::{load_manifest, resolve, write_file, Target, WriteSink};
use cas::{InfoHash, Store};

use super::{human, print_json, Cli};

/// The torrent a target means: a tree's directory (or manifest) torrent, a file's, or
/// an info-hash.
fn pick_torrent(store: &Store, target: &str, manifest: bool) -> Result<(InfoHash, TorrentRecord)> {
    Ok(cas::read::torrent_for(store, target, manifest)?)
}

pub fn torrent(cli: &Cli, target: &str, output: Option<&Path>, manifest: bool) -> Result<i32> {
    let store = cli.open()?;
    let (_, record) = pick_torrent(&store, target, manifest)?;
    match output {
        Some(p) => cas::chunks::write_atomic(p, &record.metainfo)?,
        None if super::daemon::stdout_is_terminal() => {
            bail!("refusing to write a .torrent to a terminal; pass -o FILE")
        }
        None => super::daemon::stdout().write_all(&record.metainfo)?,
    }
    Ok(0)
}

pub fn magnet(cli: &Cli, target: &str, manifest: bool) -> Result<i32> {
    let store = cli.open()?;
    let (_, record) = pick_torrent(&store, target, manifest)?;
    outln!("{}", cas::read::magnet(&record)?);
    Ok(0)
}

#[derive(Serialize)]
struct RefRow {
    name: String,
    tree: cas::TreeId,
    files: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct EntryRow {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    mtime: i64,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    blake3: Option<cas::ContentId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info_hash: Option<InfoHash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

pub fn ls(cli: &Cli, target: Option<&str>, json: bool) -> Result<i32> {
    let store = cli.open()?;
    let Some(target) = target else {
        let mut rows = Vec::new();
        for (name, tree) in store.catalog().refs()? {
            let m = load_manifest(&store, &tree)?;
            let files = m
                .entries
                .iter()
                .filter(|e| matches!(e.kind, EntryKind::File { .. }))
                .count();
            rows.push(RefRow {
                name,
                tree,
                files,
                bytes: m.logical_bytes(),
            });
        }
        if json {
            print_json(&rows)?;
        } else {
            for r in rows {
                outln!(
                    "{:<24} {}  {:>6} files  {:>10}",
                    r.name,
                    r.tree,
                    r.files,
                    human(r.bytes)
                );
            }
        }
        return Ok(0);
    };
    let tree = match resolve(&store, target)? {
        Target::Tree { id, .. } => id,
        _ => bail!("{target} is not a ref or tree id"),
    };
    let m = load_manifest(&store, &tree)?;
    let rows: Vec<EntryRow> = m
        .entries
        .iter()
        .map(|e| {
            let mut row = EntryRow {
                path: e.path_lossy(),
                kind: "dir",
                mode: format!("{:04o}", e.mode),
                mtime: e.mtime_secs,
                size: 0,
                blake3: None,
                info_hash: None,
                target: None,
            };
            match &e.kind {
                EntryKind::Dir => {}
                EntryKind::File {
                    size,
                    content,
                    info_hash,
                } => {
                    row.kind = "file";
                    row.size = *size;
                    row.blake3 = Some(*content);
                    row.info_hash = *info_hash;
                }
                EntryKind::Symlink { target } => {
                    row.kind = "symlink";
                    row.target = Some(String::from_utf8_lossy(target).into_owned());
                }
            }
            row
        })
        .collect();
    if json {
        print_json(&rows)?;
    } else {
        for r in rows {
            let tail = match (&r.target, r.kind) {
                (Some(t), _) => format!(" -> {t}"),
                (None, "dir") => "/".to_string(),
                _ => String::new(),
            };
            outln!("{} {:>12} {}{}", r.mode, r.size, r.path, tail);
        }
    }
    Ok(0)
}

pub fn cat(cli: &Cli, target: &str) -> Result<i32> {
    let store = cli.open()?;
    let Target::File { entry, .. } = resolve(&store, target)? else {
        bail!("{target}: give REF:path or TREE:path");
    };
    let mut sink = WriteSink(std::io::BufWriter::with_capacity(
        1 << 20,
        super::daemon::stdout(),
    ));
    write_file(&store, &entry, &mut sink)?;
    sink.0.flush()?;
    Ok(0)
}

pub fn stats(cli: &Cli, json: bool) -> Result<i32> {
    let store = cli.open()?;
    let s = cas::stats::stats(&store)?;
    let mut torrents = cas::stats::torrent_stats(&store)?;
    if let Some(d) = &cli.daemon {
        for t in &mut torrents {
            t.uploaded = d.engine.uploaded(&t.info_hash);
            t.ratio = t.uploaded.map(|u| u as f64 / t.size.max(1) as f64);
        }
    }
    if json {
        #[derive(serde::Serialize)]
        struct All<'a> {
            #[serde(flatten)]
            store: &'a cas::stats::Stats,
            by_torrent: &'a [cas::stats::TorrentStats],
        }
        print_json(&All {
            store: &s,
            by_torrent: &torrents,
        })?;
    } else {
        outln!("store          {}", store.root().display());
        outln!("refs           {}", s.refs);
        outln!("trees          {}", s.trees);
        outln!("torrents       {}", s.torrents);
        outln!("chunks         {}", s.chunks);
        outln!(
            "logical bytes  {} ({})",
            s.logical_bytes,
            human(s.logical_bytes)
        );
        outln!(
            "content bytes  {} ({}): file data in the packs, each chunk once, trailing zeros not written",
            s.content_bytes,
            human(s.content_bytes)
        );
        outln!(
            "dedup ratio    {:.2} (logical / content bytes)",
            s.dedup_ratio
        );
        outln!(
            "physical bytes {} ({}): the packs, logical / physical {:.2}; content bytes, plus",
            s.physical_bytes,
            human(s.physical_bytes),
            s.physical_ratio
        );
        outln!("  tree manifests {}", s.metadata_bytes);
        outln!(
            "  record headers {} ({} chunks x 76 B)",
            s.record_header_bytes,
            s.chunks
        );
        outln!(
            "  pack headers   {} ({} packs x 16 B)",
            s.pack_header_bytes,
            s.packs
        );
        outln!(
            "  unindexed      {} (dead or torn records: `cas gc` reclaims)",
            s.unindexed_bytes
        );
        outln!(
            "index          {} ({}): not in physical bytes; per chunk at most {} B of keys and values, plus sled's own",
            s.index_bytes,
            human(s.index_bytes),
            cas::stats::INDEX_ENTRY_BYTES
        );
        if !torrents.is_empty() {
            outln!();
            outln!(
                "{:<40}  {:>9}  {:>11}  {:>9}  {:>9}  {:>9}  {:>5}  name",
                "torrent",
                "size",
                "pieces",
                "shared",
                "unique",
                "uploaded",
                "ratio"
            );
        }
        for t in &torrents {
            let (up, ratio) = match (t.uploaded, t.ratio) {
                (Some(u), Some(r)) => (human(u), format!("{r:.2}")),
                _ => ("-".to_string(), "-".to_string()),
            };
            outln!(
                "{}  {:>9}  {:>5}/{:<5}  {:>9}  {:>9}  {:>9}  {:>5}  {}{}",
                t.info_hash,
                human(t.size),
                t.pieces_held,
                t.pieces,
                human(t.shared_bytes),
                human(t.unique_bytes),
                up,
                ratio,
                t.name,
                if t.downloading { " (fetching)" } else { "" }
            );
        }
    }
    Ok(0)
}
