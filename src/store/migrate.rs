//! Store formats: format 1 becomes format 2 when a store is opened, and the padded
//! lookups of the directory torrents are made again after `cas index rebuild`.
//!
//! Format 2: the piece of a BEP 47 directory torrent that ends a padded file is
//! recorded as the file's own short last chunk (read back as its bytes, then zeros:
//! [`super::content::piece_bytes`]) and found by its SHA-1 through a padded lookup
//! (`z` key, [`crate::chunks::index::PaddedEntry`]). Format 1 stored that piece as a
//! chunk of its own. [`padded_pieces`] repoints each directory torrent record at the
//! short chunks (storing a short chunk that is missing, hashed from the padded one's
//! verified bytes), adds the padded lookups and commits; only then is `config.json`
//! given format 2. It is idempotent, so a crash during it is repaired by the next
//! open. The padded chunks no longer used are left for `cas gc`.

use serde::Serialize;

use super::Store;
use crate::catalog::TorrentKind;
use crate::chunks::chunk::{Padded, VerifiedChunk};
use crate::meta::parse::Metainfo;
use crate::{Error, Result};

/// The store format this build writes.
pub const FORMAT: u32 = 2;

/// What [`padded_pieces`] did.
#[derive(Debug, Default, Serialize)]
pub struct PaddedReport {
    /// Directory torrent records rewritten to use short chunks.
    pub records_rewritten: usize,
    /// Pieces that now use a file's short chunk instead of a padded one.
    pub pieces_repointed: usize,
    /// Padded lookups added.
    pub lookups_added: usize,
}

/// Makes every directory torrent of the store use its files' short chunks for its
/// padded pieces, and indexes a padded lookup for each (see the module doc).
pub fn padded_pieces(store: &Store) -> Result<PaddedReport> {
    let mut report = PaddedReport::default();
    let catalog = store.catalog();
    for ih in catalog.torrents()? {
        let Some(mut record) = catalog.torrent(&ih)? else {
            continue;
        };
        if !matches!(record.kind, TorrentKind::Directory { .. }) {
            continue;
        }
        let meta = Metainfo::parse(&record.metainfo).map_err(|e| Error::Corrupt {
            path: store.root().join("torrents").join(ih.to_hex()),
            reason: format!("directory torrent record holds no usable torrent: {e}"),
        })?;
        if meta.pieces.len() != record.pieces.len() {
            continue; // fsck reports such a record
        }
        let mut changed = false;
        for i in 0..meta.pieces.len() {
            let Some(data) = meta.data_before_pad(i) else {
                continue;
            };
            let id = record.pieces[i];
            let len = meta.piece_len(i) as u32;
            let Some(entry) = store.entry(&id)? else {
                continue; // fsck reports the torrent as incomplete
            };
            if u64::from(entry.len) == data {
                let known = store.chunks().index().padded_by_sha1(&meta.pieces[i])?;
                if known.iter().any(|(c, _)| *c == id) {
                    continue;
                }
            } else if entry.len != len || u64::from(entry.stored) > data {
                continue; // not this torrent's padded piece as cas stores it
            }
            let chunk = store.read_at(id, &entry)?;
            let short = &chunk.bytes()[..(data as usize).min(chunk.len())];
            let Some(padded) = Padded::hash(short, len) else {
                continue;
            };
            if padded.sha1() != meta.pieces[i] {
                continue;
            }
            if padded.id() != id {
                store.put(&VerifiedChunk::hash(short.to_vec()))?;
                record.pieces[i] = padded.id();
                report.pieces_repointed += 1;
                changed = true;
            }
            store.chunks().put_padded(padded)?;
            report.lookups_added += 1;
        }
        store.commit()?;
        if changed {
            catalog.put_torrent(&ih, &record)?;
            report.records_rewritten += 1;
        }
    }
    Ok(report)
}
