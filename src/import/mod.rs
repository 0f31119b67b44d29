//! `cas import`: a directory becomes chunks, per-file torrents, a tree (manifest and
//! its torrent), a BEP 47 directory torrent and a ref.
//!
//! Order of writes, for crash safety: all chunks (synced, then indexed), then the
//! torrent records (one [`crate::catalog::CatalogBatch`]: durable at one sync point,
//! then renamed into place), then the tree record, then the ref. A crash at any
//! instant leaves at worst chunks or records that nothing live reaches; the ref, the
//! only thing a user names, appears last.
//!
//! Small files are read whole on threads kept for the import (`pool.rs`), large ones
//! piece by piece (`hasher.rs`); the torrents are built in `publish.rs`; what the
//! import saw of each file is kept for the next one (`cache.rs`).

mod cache;
mod hasher;
mod pool;
#[cfg(test)]
mod powerloss;
mod publish;
mod small;
mod walk;

pub use cache::StatCache;
use cache::{FileStat, Known};
pub use hasher::{store_file, Piece, StoredFile};
use pool::Content;
pub(crate) use publish::publish_bytes;

use std::path::Path;

use serde::Serialize;

use crate::catalog::{check_ref_name, TorrentKind, TreeRecord};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::meta::torrent::{self, Publish};
use crate::store::Store;
use crate::{ContentId, Error, InfoHash, Result, TreeId};

/// What to import and how to publish it.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Ref to point at the tree; default: the directory's name.
    pub name: Option<String>,
    /// Piece length the caller expects; an error if the store's differs.
    pub piece_length: Option<u32>,
    /// Cut the files with this piece length instead of the store's: a channel's trees
    /// are cut the same way on every node, whatever each store's piece length.
    pub cut_with: Option<u32>,
    pub publish: Publish,
    /// Names at the top of the directory to leave out (a sync's working folder).
    pub ignore: Vec<String>,
    /// A file whose metadata is as the last import of this directory saw it is taken
    /// from that import unread (`ImportReport::stat_cache`). The directory torrent is
    /// still made, from the pieces the cache lists.
    pub reuse: Option<StatCache>,
    /// Keep what this import saw in the store (`imports/<ref>`), and, without
    /// `reuse`, start from what the last import of this directory under this ref kept.
    pub remember: bool,
}

/// One published torrent.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    pub info_hash: InfoHash,
    pub magnet: String,
}

/// One imported regular file.
#[derive(Clone, Debug, Serialize)]
pub struct ImportedFile {
    pub path: String,
    pub size: u64,
    pub blake3: ContentId,
    pub info_hash: Option<InfoHash>,
}

/// The outcome of an import, as printed by `cas import --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub tree: TreeId,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub tree_torrent: Published,
    pub directory_torrent: Option<Published>,
    pub files: Vec<ImportedFile>,
    pub logical_bytes: u64,
    pub new_bytes: u64,
    /// For the next import of the same directory ([`ImportOptions::reuse`]).
    #[serde(skip)]
    pub stat_cache: StatCache,
}

/// Imports `dir`. `progress` is told of every byte of file content consumed, after
/// `total` (the sum of file sizes) has been announced through `start`.
pub fn import(
    store: &Store,
    dir: &Path,
    opts: &ImportOptions,
    start: &dyn Fn(u64),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportReport> {
    let piece_length = store.config().piece_length;
    if let Some(asked) = opts.piece_length.filter(|&p| p != piece_length) {
        return Err(Error::PieceLengthMismatch {
            store: store.root().to_path_buf(),
            store_len: piece_length,
            asked,
        });
    }
    let pl = match opts.cut_with {
        Some(p) => crate::meta::check_piece_length(p.into())?,
        None => piece_length,
    };
    let ref_name = match &opts.name {
        Some(n) => n.clone(),
        None => default_ref_name(dir)?,
    };
    check_ref_name(&ref_name)?;
    let found = walk::walk(dir, &opts.ignore)?;
    let total: u64 = found
        .iter()
        .filter(|f| f.meta.is_file())
        .map(|f| f.meta.len())
        .sum();
    start(total);
    let last_nonempty = found
        .iter()
        .rposition(|f| f.meta.is_file() && f.meta.len() > 0);
    let key = opts
        .remember
        .then(|| cache::Key::new(dir, pl, opts.publish.private))
        .flatten();
    let mut remembered = match (&opts.reuse, &key) {
        (None, Some(key)) => cache::load(store, &ref_name, key),
        _ => None,
    };
    let reuse = opts.reuse.as_ref().or(remembered.as_ref().map(|r| &r.0));

    let settled = cache::settle_point();
    let contents = pool::read_all(store, &found, reuse, pl, last_nonempty, progress)?;
    store.commit()?;

    // The file torrents, then the manifest and the directory torrent, one batch.
    let mut batch = store.catalog().batch();
    let mut entries = Vec::with_capacity(found.len());
    let mut files = Vec::new();
    let mut new_bytes = 0;
    // Files the next import may take unread: their place in the walk and metadata.
    let mut settled_files = Vec::new();
    let mut read_any = false;
    for (f, content) in found.iter().zip(&contents) {
        let (mode, mtime_secs, mtime_nanos) = walk::mode_and_mtime(&f.meta);
        let kind = match content {
            Content::Dir => EntryKind::Dir,
            Content::Symlink(target) => EntryKind::Symlink {
                target: target.clone(),
            },
            Content::Reused(k) => k.kind.clone(),
            Content::Stored(file) => {
                read_any = true;
                new_bytes += file.new_bytes;
                let info_hash = (file.size > 0)
                    .then(|| {
                        publish::file_torrent(
                            &mut batch,
                            file.content,
                            file.size,
                            &file.pieces,
                            pl,
                            &opts.publish,
                        )
                    })
                    .transpose()?
                    .map(|p| p.info_hash);
                EntryKind::File {
                    size: file.size,
                    content: file.content,
                    info_hash,
                }
            }
        };
        if let EntryKind::File {
            size,
            content,
            info_hash,
        } = &kind
        {
            files.push(ImportedFile {
                path: f.rel.clone(),
                size: *size,
                blake3: *content,
                info_hash: *info_hash,
            });
            let stat = FileStat::of(&f.meta);
            if stat.changed_before(settled) {
                settled_files.push((entries.len(), stat));
            }
        }
        entries.push(Entry {
            path: f.rel.as_bytes().to_vec(),
            mode,
            mtime_secs,
            mtime_nanos,
            kind,
        });
    }
    let manifest = Manifest { entries };
    let bytes = manifest.encode();
    let tree = Manifest::id_of(&bytes);
    let existing = store.catalog().tree(&tree)?;

    // The tree imported before under this name keeps its directory torrent.
    let kept = existing
        .as_ref()
        .filter(|r| r.name == ref_name)
        .and_then(|r| r.directory)
        .filter(|ih| store.catalog().has_torrent(ih));
    let directory = match kept {
        Some(_) => None,
        None => Some(directory_of(store, &found, &contents, last_nonempty, pl)?),
    };
    let tree_torrent = publish::put_bytes(
        store,
        &mut batch,
        &bytes,
        &tree.to_hex(),
        TorrentKind::Manifest { tree },
        pl,
        &opts.publish,
    )?;
    let directory_torrent = match (kept, directory) {
        (Some(ih), _) => Some(Published {
            info_hash: ih,
            magnet: torrent::magnet(&ih, &ref_name, &opts.publish.trackers),
        }),
        (None, Some(d)) if !d.is_empty() => {
            Some(d.publish(&mut batch, &ref_name, tree, pl, &opts.publish)?)
        }
        (None, _) => None,
    };
    batch.commit()?;
    let record = TreeRecord {
        manifest: tree_torrent.info_hash,
        directory: directory_torrent.as_ref().map(|p| p.info_hash),
        name: ref_name.clone(),
    };
    if existing.as_ref() != Some(&record) {
        store.catalog().put_tree(&tree, &record)?;
    }
    if store.catalog().get_ref(&ref_name).ok().flatten() != Some(tree) {
        store.catalog().set_ref(&ref_name, &tree)?;
    }
    // Nothing read and the same files settled: the cache loaded is the new one.
    let unchanged = !read_any
        && remembered
            .as_ref()
            .is_some_and(|(c, t)| *t == tree && c.len() == settled_files.len());
    let made = (!unchanged).then(|| settled_cache(&found, &contents, &manifest, &settled_files));
    drop(contents);
    let cache = match made {
        Some(c) => c,
        None => remembered.take().map(|(c, _)| c).unwrap_or_default(),
    };
    if let (Some(key), false) = (&key, unchanged) {
        cache::save(store, &ref_name, key, tree, &cache)?;
    }
    Ok(ImportReport {
        tree,
        ref_name,
        tree_torrent,
        directory_torrent,
        logical_bytes: manifest.logical_bytes(),
        files,
        new_bytes,
        stat_cache: cache,
    })
}

/// What the next import may take unread: the files that settled before this one.
fn settled_cache(
    found: &[walk::Found],
    contents: &[Content],
    manifest: &Manifest,
    settled: &[(usize, FileStat)],
) -> StatCache {
    let mut cache = StatCache::default();
    for &(i, stat) in settled {
        let (pieces, padded) = match &contents[i] {
            Content::Reused(k) => (k.pieces.clone(), k.padded),
            Content::Stored(f) => (f.pieces.clone(), f.padded_tail.map(|p| p.sha1)),
            Content::Dir | Content::Symlink(_) => continue,
        };
        let known = Known {
            stat,
            kind: manifest.entries[i].kind.clone(),
            pieces,
            padded,
        };
        cache.0.insert(found[i].rel.clone(), known);
    }
    cache
}

/// The directory torrent over every file's pieces, in manifest order: a file read
/// now brings its padded tail; a file taken unread, the one the cache kept (or, if it
/// was never computed, one hashed from its stored chunk).
fn directory_of(
    store: &Store,
    found: &[walk::Found],
    contents: &[Content],
    last_nonempty: Option<usize>,
    pl: u32,
) -> Result<publish::Directory> {
    let mut d = publish::Directory::default();
    for (i, (f, content)) in found.iter().zip(contents).enumerate() {
        match content {
            Content::Stored(file) => d.add(&f.rel, file.size, &file.pieces, file.padded_tail, pl),
            Content::Reused(k) => {
                let EntryKind::File { size, .. } = k.kind else {
                    continue;
                };
                let padded = Some(i) != last_nonempty && size % u64::from(pl) != 0;
                let tail = match (k.pieces.last(), k.padded) {
                    (Some(last), Some(sha1)) if padded => Some(Piece { id: last.id, sha1 }),
                    (Some(last), None) if padded => Some(publish::padded_tail_of(store, last, pl)?),
                    _ => None,
                };
                d.add(&f.rel, size, &k.pieces, tail, pl);
            }
            Content::Dir | Content::Symlink(_) => {}
        }
    }
    Ok(d)
}

fn default_ref_name(dir: &Path) -> Result<String> {
    let canonical = std::fs::canonicalize(dir).map_err(Error::io(dir, "resolve"))?;
    canonical
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::BadInput {
            path: dir.to_path_buf(),
            reason: "has no usable name for a ref; pass --name".into(),
        })
}
