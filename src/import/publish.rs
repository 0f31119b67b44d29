//! The torrents an import makes over stored pieces: each file's, the manifest's and
//! the directory's, their records written into one [`CatalogBatch`].

use crate::catalog::{CatalogBatch, TorrentKind, TorrentRecord};
use crate::chunks::chunk::{Padded, VerifiedChunk};
use crate::meta::bencode::Value;
use crate::meta::torrent::{self, Publish, TorrentFile};
use crate::store::Store;
use crate::{ChunkId, ContentId, Error, PieceHash, Result};

use super::hasher::Piece;
use super::Published;

/// A torrent to record: what it carries and its info dictionary.
pub(super) struct Made<'a> {
    pub kind: TorrentKind,
    pub info: Value,
    pub name: &'a str,
    pub length: u64,
    pub piece_length: u32,
    pub pieces: Vec<ChunkId>,
}

/// Records a torrent over stored pieces in `batch` (unless the catalog has it) and
/// returns it.
pub(super) fn publish_torrent(
    batch: &mut CatalogBatch<'_>,
    made: Made<'_>,
    publish: &Publish,
) -> Result<Published> {
    let ih = torrent::info_hash(&made.info);
    let record = TorrentRecord {
        kind: made.kind,
        length: made.length,
        piece_length: made.piece_length,
        pieces: made.pieces,
        metainfo: torrent::metainfo(made.info, publish),
    };
    // Written only if neither the catalog nor the batch has it.
    batch.put_torrent(&ih, &record)?;
    Ok(Published {
        info_hash: ih,
        magnet: torrent::magnet(&ih, made.name, &publish.trackers),
    })
}

/// A file's single-file torrent, named by its content hash.
pub(super) fn file_torrent(
    batch: &mut CatalogBatch<'_>,
    content: ContentId,
    size: u64,
    pieces: &[Piece],
    piece_length: u32,
    publish: &Publish,
) -> Result<Published> {
    let name = content.to_hex();
    let sha1s: Vec<_> = pieces.iter().map(|p| p.sha1).collect();
    let made = Made {
        kind: TorrentKind::File { content },
        info: torrent::single_file_info(&name, size, piece_length, &sha1s, publish),
        name: &name,
        length: size,
        piece_length,
        pieces: pieces.iter().map(|p| p.id).collect(),
    };
    publish_torrent(batch, made, publish)
}

/// Stores a byte string (a manifest) as pieces, commits them, and records it in
/// `batch` as a single-file torrent named `name`.
pub(super) fn put_bytes(
    store: &Store,
    batch: &mut CatalogBatch<'_>,
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
    let made = Made {
        kind,
        info: torrent::single_file_info(name, bytes.len() as u64, piece_length, &sha1s, publish),
        name,
        length: bytes.len() as u64,
        piece_length,
        pieces: ids,
    };
    publish_torrent(batch, made, publish)
}

/// Stores a byte string (a manifest, a channel's name) as pieces and publishes it as
/// a single-file torrent named `name`, its record durable on return.
pub(crate) fn publish_bytes(
    store: &Store,
    bytes: &[u8],
    name: &str,
    kind: TorrentKind,
    piece_length: u32,
    publish: &Publish,
) -> Result<Published> {
    let mut batch = store.catalog().batch();
    let published = put_bytes(store, &mut batch, bytes, name, kind, piece_length, publish)?;
    batch.commit()?;
    Ok(published)
}

/// The BEP 47 directory torrent, built file by file in manifest order.
#[derive(Default)]
pub(super) struct Directory {
    files: Vec<TorrentFile>,
    sha1s: Vec<PieceHash>,
    ids: Vec<ChunkId>,
    length: u64,
}

impl Directory {
    /// Adds a file: its pieces and, if it is followed by a pad file, its last piece
    /// padded (`tail`).
    pub fn add(&mut self, path: &str, size: u64, pieces: &[Piece], tail: Option<Piece>, pl: u32) {
        self.files.push(TorrentFile {
            path: path.split('/').map(str::to_string).collect(),
            length: size,
            pad: false,
        });
        self.length += size;
        let full = pieces.len() - usize::from(tail.is_some());
        for p in pieces[..full].iter().chain(tail.as_ref()) {
            self.sha1s.push(p.sha1);
            self.ids.push(p.id);
        }
        if tail.is_some() {
            let pad = u64::from(pl) - size % u64::from(pl);
            self.files.push(TorrentFile {
                path: vec![".pad".into(), pad.to_string()],
                length: pad,
                pad: true,
            });
            self.length += pad;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Records the torrent in `batch`.
    pub fn publish(
        self,
        batch: &mut CatalogBatch<'_>,
        name: &str,
        tree: crate::TreeId,
        piece_length: u32,
        publish: &Publish,
    ) -> Result<Published> {
        let info = torrent::multi_file_info(name, &self.files, piece_length, &self.sha1s, publish);
        let made = Made {
            kind: TorrentKind::Directory { tree },
            info,
            name,
            length: self.length,
            piece_length,
            pieces: self.ids,
        };
        publish_torrent(batch, made, publish)
    }
}

/// The padded last piece of a file already stored, from its chunk (not the file):
/// for a file taken unread whose padded tail was never computed. Its padded lookup
/// is indexed at the next commit.
pub(super) fn padded_tail_of(store: &Store, last: &Piece, piece_length: u32) -> Result<Piece> {
    let chunk = store.get(&last.id)?;
    let padded = Padded::hash(chunk.bytes(), piece_length)
        .ok_or_else(|| Error::Invalid(format!("chunk {} is not shorter than a piece", last.id)))?;
    store.chunks().put_padded(padded)?;
    Ok(Piece {
        id: padded.id(),
        sha1: padded.sha1(),
    })
}
