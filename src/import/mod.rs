//! `cas import`: a directory becomes chunks, per-file torrents, a tree (manifest and
//! its torrent), a BEP 47 directory torrent and a ref.
//!
//! Order of writes, for crash safety: all chunks (synced, then indexed), then the
//! torrent records, then the tree record, then the ref. A crash at any instant leaves
//! at worst chunks or records that nothing live reaches; the ref, the only thing a
//! user names, appears last.

mod cache;
mod hasher;
#[cfg(test)]
mod powerloss;
mod walk;

use cache::FileStat;
pub use cache::StatCache;
pub use hasher::{store_file, Piece, StoredFile};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::catalog::{check_ref_name, TorrentKind, TorrentRecord, TreeRecord};
use crate::chunks::chunk::VerifiedChunk;
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::meta::torrent::{self, Publish, TorrentFile};
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
    /// from that import unread (`ImportReport::stat_cache`). No directory torrent is
    /// made then: it would need every file's pieces.
    pub reuse: Option<StatCache>,
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

/// Builds, records and returns a torrent over stored pieces.
#[allow(clippy::too_many_arguments)]
fn publish_torrent(
    store: &Store,
    kind: TorrentKind,
    info: crate::meta::bencode::Value,
    name: &str,
    length: u64,
    piece_length: u32,
    pieces: Vec<crate::ChunkId>,
    publish: &Publish,
) -> Result<Published> {
    let ih = torrent::info_hash(&info);
    if !store.catalog().has_torrent(&ih) {
        let record = TorrentRecord {
            kind,
            length,
            piece_length,
            pieces,
            metainfo: torrent::metainfo(info, publish),
        };
        store.catalog().put_torrent(&ih, &record)?;
    }
    Ok(Published {
        info_hash: ih,
        magnet: torrent::magnet(&ih, name, &publish.trackers),
    })
}

/// Stores a byte string (a manifest, a channel's name) as pieces and publishes it as
/// a single-file torrent named `name`.
pub(crate) fn publish_bytes(
    store: &Store,
    bytes: &[u8],
    name: &str,
    kind: TorrentKind,
    piece_length: u32,
    publish: &Publish,
) -> Result<Published> {
    let mut ids = Vec::new();
    let mut sha1s = Vec::new();
    for piece in bytes.chunks(piece_length as usize) {
        let chunk = VerifiedChunk::hash(piece.to_vec());
        store.put(&chunk)?;
        ids.push(chunk.id());
        sha1s.push(chunk.sha1());
    }
    store.commit()?;
    let info = torrent::single_file_info(name, bytes.len() as u64, piece_length, &sha1s, publish);
    publish_torrent(
        store,
        kind,
        info,
        name,
        bytes.len() as u64,
        piece_length,
        ids,
        publish,
    )
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
    let piece_length = match opts.cut_with {
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

    let mut entries = Vec::with_capacity(found.len());
    let mut stored = Vec::new();
    let mut reused = Vec::new();
    let mut new_bytes = 0;
    let mut stats = Vec::with_capacity(found.len());
    let settled = cache::settle_point();
    for (i, f) in found.iter().enumerate() {
        let (mode, mtime_secs, mtime_nanos) = walk::mode_and_mtime(&f.meta);
        let stat = FileStat::of(&f.meta);
        let known = opts
            .reuse
            .as_ref()
            .and_then(|c| c.0.get(&f.rel))
            .filter(|(s, k)| {
                *s == stat
                    && match k {
                        EntryKind::File {
                            info_hash: Some(ih),
                            ..
                        } => store.catalog().has_torrent(ih),
                        _ => true,
                    }
            });
        let kind = if f.meta.is_dir() {
            EntryKind::Dir
        } else if f.meta.file_type().is_symlink() {
            let target = std::fs::read_link(&f.disk).map_err(Error::io(&f.disk, "read link"))?;
            EntryKind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if let Some((_, kind)) = f.meta.is_file().then_some(known).flatten() {
            reused.push(entries.len());
            kind.clone()
        } else {
            let file = store_file(
                store,
                &f.disk,
                &f.meta,
                piece_length,
                Some(i) != last_nonempty,
                progress,
            )
            .map_err(|err| match err {
                Error::Io { ref path, .. } | Error::BadInput { ref path, .. }
                    if *path == f.disk =>
                {
                    err
                }
                err => Error::Importing {
                    path: f.disk.clone(),
                    err: Box::new(err),
                },
            })?;
            new_bytes += file.new_bytes;
            let kind = EntryKind::File {
                size: file.size,
                content: file.content,
                info_hash: None,
            };
            stored.push((entries.len(), file));
            kind
        };
        stats.push((f.meta.is_file() && stat.changed_before(settled)).then_some(stat));
        entries.push(Entry {
            path: f.rel.as_bytes().to_vec(),
            mode,
            mtime_secs,
            mtime_nanos,
            kind,
        });
    }
    store.commit()?;

    // Per-file torrents, then the directory torrent over the same pieces.
    let mut files = Vec::new();
    let mut dir_files = Vec::new();
    let mut dir_pieces = Vec::new();
    let mut dir_ids = Vec::new();
    let mut dir_len = 0u64;
    for (at, file) in &stored {
        let entry = &mut entries[*at];
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let info_hash = if file.size > 0 {
            let name = file.content.to_hex();
            let sha1s: Vec<_> = file.pieces.iter().map(|p| p.sha1).collect();
            let info =
                torrent::single_file_info(&name, file.size, piece_length, &sha1s, &opts.publish);
            let ids = file.pieces.iter().map(|p| p.id).collect();
            let kind = TorrentKind::File {
                content: file.content,
            };
            Some(
                publish_torrent(
                    store,
                    kind,
                    info,
                    &name,
                    file.size,
                    piece_length,
                    ids,
                    &opts.publish,
                )?
                .info_hash,
            )
        } else {
            None
        };
        if let EntryKind::File { info_hash: ih, .. } = &mut entry.kind {
            *ih = info_hash;
        }
        dir_files.push(TorrentFile {
            path: path.split('/').map(str::to_string).collect(),
            length: file.size,
            pad: false,
        });
        dir_len += file.size;
        let mut pieces = file.pieces.clone();
        if let Some(tail) = file.padded_tail {
            pieces.pop();
            pieces.push(tail);
            let pad = u64::from(piece_length) - file.size % u64::from(piece_length);
            dir_files.push(TorrentFile {
                path: vec![".pad".into(), pad.to_string()],
                length: pad,
                pad: true,
            });
            dir_len += pad;
        }
        dir_pieces.extend(pieces.iter().map(|p| p.sha1));
        dir_ids.extend(pieces.iter().map(|p| p.id));
        files.push(ImportedFile {
            path,
            size: file.size,
            blake3: file.content,
            info_hash,
        });
    }

    for &at in &reused {
        if let EntryKind::File {
            size,
            content,
            info_hash,
        } = &entries[at].kind
        {
            files.push(ImportedFile {
                path: entries[at].path_lossy(),
                size: *size,
                blake3: *content,
                info_hash: *info_hash,
            });
        }
    }
    let mut cache = StatCache::default();
    for (e, stat) in entries.iter().zip(&stats) {
        if let Some(stat) = stat {
            cache.0.insert(e.path_lossy(), (*stat, e.kind.clone()));
        }
    }
    let manifest = Manifest { entries };
    let bytes = manifest.encode();
    let tree = Manifest::id_of(&bytes);
    let tree_torrent = publish_bytes(
        store,
        &bytes,
        &tree.to_hex(),
        TorrentKind::Manifest { tree },
        piece_length,
        &opts.publish,
    )?;
    let directory_torrent = if dir_pieces.is_empty() || opts.reuse.is_some() {
        None
    } else {
        let info = torrent::multi_file_info(
            &ref_name,
            &dir_files,
            piece_length,
            &dir_pieces,
            &opts.publish,
        );
        Some(publish_torrent(
            store,
            TorrentKind::Directory { tree },
            info,
            &ref_name,
            dir_len,
            piece_length,
            dir_ids,
            &opts.publish,
        )?)
    };
    // Without a directory torrent, a record that has one is kept as it is.
    if directory_torrent.is_some() || store.catalog().tree(&tree)?.is_none() {
        store.catalog().put_tree(
            &tree,
            &TreeRecord {
                manifest: tree_torrent.info_hash,
                directory: directory_torrent.as_ref().map(|p| p.info_hash),
                name: ref_name.clone(),
            },
        )?;
    }
    store.catalog().set_ref(&ref_name, &tree)?;
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
