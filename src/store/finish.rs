//! A download whose every piece is stored becomes a catalog record.
//!
//! A single-file torrent named by a 64-digit hex string is one of cas's own: if the
//! BLAKE3 of its content is its name, it is recorded as a file (or, when the bytes
//! are a manifest, as that tree's manifest torrent, and the tree is recorded too).
//! Every other torrent is recorded as it came.

use crate::catalog::{TorrentKind, TorrentRecord, TreeRecord};
use crate::manifest::Manifest;
use crate::meta::parse::Metainfo;
use crate::store::content::piece_bytes;
use crate::{ChunkId, ContentId, Result, Store, TreeId};

/// BLAKE3 of the torrent's content, read back from the store.
fn content_hash(store: &Store, meta: &Metainfo, pieces: &[ChunkId]) -> Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    for (i, id) in pieces.iter().enumerate() {
        let chunk = store.get(id)?;
        let (data, zeros) = piece_bytes(chunk.bytes(), 0, meta.piece_len(i) as usize);
        h.update(data);
        h.update(&vec![0; zeros]);
    }
    Ok(h.finalize())
}

pub fn is_content_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a complete torrent carries.
fn classify(
    store: &Store,
    meta: &Metainfo,
    pieces: &[ChunkId],
    hash: Option<blake3::Hash>,
) -> Result<TorrentKind> {
    if !(meta.single_file && is_content_name(&meta.name)) {
        return Ok(TorrentKind::Foreign);
    }
    let hash = match hash {
        Some(h) => h,
        None => content_hash(store, meta, pieces)?,
    };
    if hash.to_hex().as_str() != meta.name {
        return Ok(TorrentKind::Foreign);
    }
    let first = pieces.first().map(|id| store.get(id)).transpose()?;
    if first.is_some_and(|c| c.bytes().starts_with(crate::manifest::MAGIC)) {
        let mut bytes = Vec::with_capacity(meta.length as usize);
        for (i, id) in pieces.iter().enumerate() {
            let chunk = store.get(id)?;
            let (data, zeros) = piece_bytes(chunk.bytes(), 0, meta.piece_len(i) as usize);
            bytes.extend_from_slice(data);
            bytes.resize(bytes.len() + zeros, 0);
        }
        if Manifest::decode(&bytes).is_ok() {
            return Ok(TorrentKind::Manifest {
                tree: TreeId(*hash.as_bytes()),
            });
        }
    }
    Ok(TorrentKind::File {
        content: ContentId(*hash.as_bytes()),
    })
}

/// Records a complete download in the catalog, pins it, and forgets it as a download.
/// `hash` is the content's BLAKE3 if it was worked out as the pieces arrived.
pub fn record(
    store: &Store,
    meta: &Metainfo,
    pieces: Vec<ChunkId>,
    hash: Option<blake3::Hash>,
) -> Result<TorrentKind> {
    // Records name only durable chunks.
    store.commit()?;
    let kind = classify(store, meta, &pieces, hash)?;
    let torrent = store
        .catalog()
        .download(&meta.info_hash)?
        .unwrap_or_else(|| meta.to_torrent());
    // The tree first: the torrent record is what says the download is complete.
    if let TorrentKind::Manifest { tree } = &kind {
        if store.catalog().tree(tree)?.is_none() {
            store.catalog().put_tree(
                tree,
                &TreeRecord {
                    manifest: meta.info_hash,
                    directory: None,
                    name: tree.to_hex(),
                },
            )?;
        }
    }
    store.catalog().put_torrent(
        &meta.info_hash,
        &TorrentRecord {
            kind: kind.clone(),
            length: meta.length,
            piece_length: meta.piece_length,
            pieces,
            metainfo: torrent,
        },
    )?;
    // Kept until `cas rm`, or until a ref reaches it (`cas get` of a tree then unpins).
    store.catalog().pin(&meta.info_hash)?;
    store.catalog().remove_download(&meta.info_hash)?;
    tracing::info!("torrent {} complete: {kind:?}", meta.info_hash);
    Ok(kind)
}
