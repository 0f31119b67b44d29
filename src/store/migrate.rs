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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::chunks::chunk::Digests;
    use crate::chunks::index::IndexBatch;
    use crate::import::{import, ImportOptions};
    use crate::store::content::{content_bytes, torrent};
    use crate::{InfoHash, TreeId};

    const PIECE: u32 = 64 << 10;

    fn bytes(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    /// Files: two padded (a, b/c), one a whole number of pieces (d), an empty one and
    /// the last (e), which a directory torrent does not pad.
    fn tree(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
        let files = vec![
            ("a.txt", bytes(1, 5000)),
            ("b/c.bin", bytes(2, 3 * PIECE as usize + 7)),
            ("b/d.bin", bytes(3, PIECE as usize)),
            ("b/empty", Vec::new()),
            ("e.txt", bytes(4, 100)),
        ];
        for (p, b) in &files {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        }
        files
    }

    fn import_tree(store: &Store, dir: &Path) -> (TreeId, InfoHash) {
        let r = import(store, dir, &ImportOptions::default(), &|_| {}, &|_| {}).unwrap();
        (r.tree, r.directory_torrent.unwrap().info_hash)
    }

    /// What format 1 wrote: every padded piece of a directory torrent a chunk of its
    /// own (the piece's bytes, zeros and all), no padded lookups, `format: 1`.
    fn make_format_1(root: &Path, dir_ih: &InfoHash) {
        let store = Store::open(root, None).unwrap();
        let mut batch = IndexBatch::default();
        for item in store.chunks().index().padded_keys() {
            let (sha1, id, _) = item.unwrap();
            batch.remove_padded(&sha1, id);
        }
        store.chunks().index().apply(batch).unwrap();
        let mut record = torrent(&store, dir_ih).unwrap();
        let meta = Metainfo::parse(&record.metainfo).unwrap();
        for i in 0..meta.pieces.len() {
            if meta.data_before_pad(i).is_some() {
                let mut b = store.get(&record.pieces[i]).unwrap().into_bytes();
                b.resize(meta.piece_len(i) as usize, 0);
                let c = VerifiedChunk::hash(b);
                assert_eq!(c.sha1(), meta.pieces[i]);
                store.put(&c).unwrap();
                record.pieces[i] = c.id();
            }
        }
        store.commit().unwrap();
        store.catalog().put_torrent(dir_ih, &record).unwrap();
        drop(store);
        let config = root.join("config.json");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace("\"format\": 2", "\"format\": 1")).unwrap();
    }

    fn dir_content(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let last = files.iter().rposition(|(_, b)| !b.is_empty()).unwrap();
        // Manifest order: paths sorted by bytes.
        let mut sorted: Vec<_> = files.iter().enumerate().collect();
        sorted.sort_by(|a, b| a.1 .0.cmp(b.1 .0));
        for (i, (_, b)) in sorted {
            out.extend_from_slice(b);
            if i != last && b.len() % PIECE as usize != 0 {
                out.resize(out.len().next_multiple_of(PIECE as usize), 0);
            }
        }
        out
    }

    #[test]
    fn a_format_1_store_is_migrated_on_open_and_reads_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, src) = (tmp.path().join("store"), tmp.path().join("src"));
        let files = tree(&src);
        let (tree_id, dir_ih) = {
            let store = Store::open(&root, Some(PIECE)).unwrap();
            import_tree(&store, &src)
        };
        make_format_1(&root, &dir_ih);
        let old_chunks = {
            // Opening migrates; count what format 1 left first, through the index alone.
            let index = crate::chunks::index::Index::open(&root.join("index")).unwrap();
            index.len()
        };

        let mut store = Store::open(&root, None).unwrap();
        assert_eq!(store.config().format, FORMAT);
        let config = std::fs::read_to_string(root.join("config.json")).unwrap();
        assert!(config.contains("\"format\": 2"), "{config}");
        // The directory torrent now uses its files' last chunks, and reads the same.
        let record = torrent(&store, &dir_ih).unwrap();
        let meta = Metainfo::parse(&record.metainfo).unwrap();
        let content = content_bytes(&store, &record).unwrap();
        assert_eq!(content, dir_content(&files));
        for (i, piece) in content.chunks(PIECE as usize).enumerate() {
            assert_eq!(Digests::of(piece).sha1, meta.pieces[i], "piece {i}");
            let entry = store.entry(&record.pieces[i]).unwrap().unwrap();
            match meta.data_before_pad(i) {
                Some(data) => {
                    assert_eq!(u64::from(entry.len), data, "piece {i} is its file's chunk");
                    assert!(store
                        .find_by_sha1(&meta.pieces[i])
                        .unwrap()
                        .contains(&record.pieces[i]));
                }
                None => assert_eq!(u64::from(entry.len), meta.piece_len(i)),
            }
        }
        // The padded chunks format 1 stored are garbage now.
        let gc = crate::store::gc::collect(&mut store).unwrap();
        assert_eq!(gc.chunks_removed, 2);
        assert_eq!(store.chunks().index().len(), old_chunks - 2);
        for i in 0..meta.pieces.len() {
            if meta.data_before_pad(i).is_some() {
                assert_eq!(
                    store.find_by_sha1(&meta.pieces[i]).unwrap(),
                    vec![record.pieces[i]]
                );
            }
        }
        let report = crate::store::fsck::fsck(&mut store, false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        let out = tmp.path().join("out");
        crate::export::export(&store, &tree_id, &out).unwrap();
        for (p, b) in &files {
            assert_eq!(std::fs::read(out.join(p)).unwrap(), *b, "{p}");
        }
        assert_eq!(content_bytes(&store, &record).unwrap(), dir_content(&files));
        drop(store);
        // Opening again changes nothing.
        let store = Store::open(&root, None).unwrap();
        assert_eq!(padded_pieces(&store).unwrap().lookups_added, 0);
    }

    #[test]
    fn padded_lookups_are_checked_by_fsck_and_dropped_with_their_chunk() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, src) = (tmp.path().join("store"), tmp.path().join("src"));
        tree(&src);
        let mut store = Store::open(&root, Some(PIECE)).unwrap();
        let (_, dir_ih) = import_tree(&store, &src);
        let record = torrent(&store, &dir_ih).unwrap();
        let meta = Metainfo::parse(&record.metainfo).unwrap();
        let lookups: Vec<_> = store
            .chunks()
            .index()
            .padded_keys()
            .map(|k| k.unwrap())
            .collect();
        assert_eq!(lookups.len(), 2, "a.txt and b/c.bin are padded");
        let report = crate::store::fsck::fsck(&mut store, false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        // A lookup that names bytes which, padded, do not hash to it is damage.
        let (sha1, _, entry) = lookups[0];
        let other = record.pieces[meta.pieces.len() - 1]; // e.txt's chunk
        let mut batch = IndexBatch::default();
        batch.insert_padded(&sha1, other, &entry);
        store.chunks().index().apply(batch).unwrap();
        assert!(!store.find_by_sha1(&sha1).unwrap().contains(&other));
        let report = crate::store::fsck::fsck(&mut store, true).unwrap();
        assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
        assert!(report.damaged[0].contains("padded lookup"));
        let report = crate::store::fsck::fsck(&mut store, false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(store.chunks().index().padded_keys().count(), 2);
        // Removing the tree removes the lookups with the chunks.
        store.catalog().remove_ref("src").unwrap();
        crate::store::gc::collect(&mut store).unwrap();
        assert_eq!(store.chunks().index().padded_keys().count(), 0);
        // After `cas index rebuild` the directory torrents give them back.
        drop(store);
        let mut store = Store::open(&root, None).unwrap();
        let (_, dir_ih) = import_tree(&store, &src);
        crate::chunks::rebuild::rebuild(store.chunks_mut()).unwrap();
        assert_eq!(store.chunks().index().padded_keys().count(), 0);
        assert_eq!(padded_pieces(&store).unwrap().lookups_added, 2);
        let record = torrent(&store, &dir_ih).unwrap();
        for (sha1, id, _) in lookups {
            assert!(record.pieces.contains(&id));
            assert_eq!(store.find_by_sha1(&sha1).unwrap(), vec![id]);
        }
    }

    #[test]
    fn a_padded_piece_whose_sha1_collides_is_not_found_by_it() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sha1-collisions");
        let tmp = tempfile::tempdir().unwrap();
        let (root, src) = (tmp.path().join("store"), tmp.path().join("src"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::copy(data.join("shattered-1.pdf"), src.join("1.pdf")).unwrap();
        std::fs::write(src.join("2.txt"), b"after").unwrap();
        let store = Store::open(&root, Some(512 << 10)).unwrap();
        let (_, dir_ih) = import_tree(&store, &src);
        let record = torrent(&store, &dir_ih).unwrap();
        let meta = Metainfo::parse(&record.metainfo).unwrap();
        assert!(meta.data_before_pad(0).is_some());
        // The PDF then zeros is SHAttered with a common suffix: still a collision.
        assert!(store.find_by_sha1(&meta.pieces[0]).unwrap().is_empty());
        let (_, _, entry) = store
            .chunks()
            .index()
            .padded_keys()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(entry.collision, crate::chunks::chunk::Collision::Detected);
    }

    #[test]
    fn a_download_held_through_a_padded_lookup_reads_and_records_as_its_bytes() {
        use crate::meta::torrent::{metainfo, single_file_info, Publish};
        let tmp = tempfile::tempdir().unwrap();
        let (root, src) = (tmp.path().join("store"), tmp.path().join("src"));
        tree(&src);
        let store = Store::open(&root, Some(PIECE)).unwrap();
        import_tree(&store, &src);
        // Another file's one piece is a.txt then zeros: the store holds it already.
        let mut content = bytes(1, 5000);
        content.resize(PIECE as usize, 0);
        let sha1s = [Digests::of(&content).sha1];
        let name = blake3::hash(&content).to_hex().to_string();
        let info = single_file_info(&name, PIECE.into(), PIECE, &sha1s, &Publish::default());
        let meta = Metainfo::parse(&metainfo(info, &Publish::default())).unwrap();
        let held = crate::store::content::held_pieces(&store, &meta).unwrap();
        let short = crate::ChunkId::of(&bytes(1, 5000));
        assert_eq!(held, vec![Some(short)]);
        let kind = crate::store::finish::record(&store, &meta, vec![short], None).unwrap();
        assert_eq!(
            kind,
            TorrentKind::File {
                content: crate::ContentId(*blake3::hash(&content).as_bytes())
            }
        );
        let record = torrent(&store, &meta.info_hash).unwrap();
        assert_eq!(content_bytes(&store, &record).unwrap(), content);
    }
}
