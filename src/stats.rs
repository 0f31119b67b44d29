//! `cas stats`: how much the store holds, what deduplication saves, and what each
//! byte on disk is.

use serde::Serialize;

use crate::catalog::TorrentKind;
use crate::chunks::pack;
use crate::meta::parse::Metainfo;
use crate::store::Store;
use crate::{ChunkId, Error, InfoHash, Result};

/// Store-wide figures.
///
/// What each byte of the packs is: `physical_bytes` is `content_bytes`,
/// `metadata_bytes`, `record_header_bytes`, `pack_header_bytes` and
/// `unindexed_bytes`. Every chunk costs a 76-byte record header in its pack and an
/// index entry in `index/` (sled, not in `physical_bytes`: at most 130 bytes of keys
/// and values, [`INDEX_ENTRY_BYTES`]); a chunk's trailing zeros are not written.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub refs: usize,
    pub trees: usize,
    pub torrents: usize,
    pub chunks: usize,
    /// Packs on disk.
    pub packs: usize,
    /// Bytes of all pack files on disk.
    pub physical_bytes: u64,
    /// Sum of the lengths of all stored chunks (trailing zeros included).
    pub chunk_bytes: u64,
    /// Data bytes of the chunks of content (file data, torrents from elsewhere) in the
    /// packs: each chunk once, without its trailing zeros.
    pub content_bytes: u64,
    /// Data bytes of the chunks only tree manifests use.
    pub metadata_bytes: u64,
    /// 76 bytes per chunk.
    pub record_header_bytes: u64,
    /// 16 bytes per pack.
    pub pack_header_bytes: u64,
    /// Pack bytes no index entry names (dead chunks, torn writes): `cas gc` reclaims.
    pub unindexed_bytes: u64,
    /// Bytes of the index's files (`index/`), not in `physical_bytes`.
    pub index_bytes: u64,
    /// What the store holds as users see it: the file sizes of every tree a ref names
    /// (a tree named twice counts once), plus the length of every torrent from
    /// elsewhere (adopted or fetched).
    pub logical_bytes: u64,
    /// `logical_bytes / content_bytes`: how many bytes users see per byte of content
    /// stored (zeros not written count as saved). Overheads are the fields above.
    pub dedup_ratio: f64,
    /// `logical_bytes / physical_bytes`: the same, every pack byte counted.
    pub physical_ratio: f64,
}

/// Index bytes per chunk at most, keys and values (sled's own overhead aside): the
/// `c` key (33) and its postcard entry (at most 44), the `s` key (53).
pub const INDEX_ENTRY_BYTES: u64 = 33 + 44 + 53;

fn ratio(num: u64, den: u64) -> f64 {
    match (num, den) {
        (0, 0) => 1.0,
        (n, d) => n as f64 / d.max(1) as f64,
    }
}

pub fn stats(store: &Store) -> Result<Stats> {
    use std::collections::HashSet;
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
    let (mut manifest_chunks, mut content_chunks) = (HashSet::new(), HashSet::new());
    for ih in store.catalog().torrents()? {
        if let Some(r) = store.catalog().torrent(&ih)? {
            match r.kind {
                TorrentKind::Foreign => s.logical_bytes += r.length,
                TorrentKind::Manifest { .. } => manifest_chunks.extend(r.pieces),
                _ => content_chunks.extend(r.pieces),
            }
        }
    }
    for item in store.chunks().index().entries() {
        let (id, entry) = item?;
        s.chunks += 1;
        s.chunk_bytes += u64::from(entry.len);
        if manifest_chunks.contains(&id) && !content_chunks.contains(&id) {
            s.metadata_bytes += u64::from(entry.stored);
        } else {
            s.content_bytes += u64::from(entry.stored);
        }
    }
    let dir = store.chunks().packs_dir();
    for n in store.chunks().pack_numbers()? {
        let p = dir.join(pack::pack_file_name(n));
        s.packs += 1;
        s.physical_bytes += std::fs::metadata(&p)
            .map_err(Error::io(&p, "stat pack"))?
            .len();
    }
    s.record_header_bytes = s.chunks as u64 * pack::RECORD_HEADER_LEN as u64;
    s.pack_header_bytes = s.packs as u64 * pack::PACK_HEADER_LEN;
    s.unindexed_bytes = s.physical_bytes.saturating_sub(
        s.content_bytes + s.metadata_bytes + s.record_header_bytes + s.pack_header_bytes,
    );
    let index = store.root().join("index");
    if let Ok(entries) = std::fs::read_dir(&index) {
        for e in entries.flatten() {
            s.index_bytes += e
                .metadata()
                .map_or(0, |m| if m.is_file() { m.len() } else { 0 });
        }
    }
    s.dedup_ratio = ratio(s.logical_bytes, s.content_bytes);
    s.physical_ratio = ratio(s.logical_bytes, s.physical_bytes);
    Ok(s)
}

/// One torrent's share of the store.
#[derive(Debug, Serialize)]
pub struct TorrentStats {
    pub info_hash: InfoHash,
    /// The name given with `cas add --name`, else the torrent's own.
    pub name: String,
    /// Content length (pad files included).
    pub size: u64,
    pub pieces: usize,
    pub pieces_held: usize,
    /// Bytes of held pieces that another torrent uses too.
    pub shared_bytes: u64,
    /// Bytes of held pieces no other torrent uses: what removing it would free.
    pub unique_bytes: u64,
    /// Still being fetched.
    pub downloading: bool,
    /// Bytes sent to peers since `cas serve` started (when it runs), and that over size.
    pub uploaded: Option<u64>,
    pub ratio: Option<f64>,
}

/// Figures for every torrent added for its own sake: pinned, foreign (adopted or
/// fetched) and downloads. A torrent's pieces count as shared when any other torrent
/// of the store (a tree's file torrents included) holds the same chunk.
pub fn torrent_stats(store: &Store) -> Result<Vec<TorrentStats>> {
    use std::collections::{HashMap, HashSet};
    let catalog = store.catalog();
    // Chunk -> the torrents that hold it.
    let mut users: HashMap<ChunkId, u32> = HashMap::new();
    let mut rows: Vec<(InfoHash, Metainfo, Vec<Option<ChunkId>>, bool)> = Vec::new();
    let pinned: HashSet<InfoHash> = catalog.pins()?.into_iter().collect();
    let count = |held: &[Option<ChunkId>], users: &mut HashMap<ChunkId, u32>| {
        let distinct: HashSet<ChunkId> = held.iter().flatten().copied().collect();
        for c in distinct {
            *users.entry(c).or_default() += 1;
        }
    };
    for ih in catalog.torrents()? {
        let Some(r) = catalog.torrent(&ih)? else {
            continue;
        };
        let held: Vec<Option<ChunkId>> = r.pieces.iter().map(|c| Some(*c)).collect();
        count(&held, &mut users);
        if pinned.contains(&ih) || r.kind == TorrentKind::Foreign {
            if let Ok(meta) = Metainfo::parse(&r.metainfo) {
                rows.push((ih, meta, held, false));
            }
        }
    }
    for ih in catalog.downloads()? {
        let Some(bytes) = catalog.download(&ih)? else {
            continue;
        };
        let Ok(meta) = Metainfo::parse(&bytes) else {
            continue;
        };
        let held = crate::store::content::held_pieces(store, &meta)?;
        count(&held, &mut users);
        rows.push((ih, meta, held, true));
    }
    let mut out = Vec::new();
    for (ih, meta, held, downloading) in rows {
        let (mut shared, mut unique) = (0, 0);
        for (i, c) in held.iter().enumerate() {
            let Some(c) = c else { continue };
            match users.get(c).copied().unwrap_or(0) > 1 {
                true => shared += meta.piece_len(i),
                false => unique += meta.piece_len(i),
            }
        }
        out.push(TorrentStats {
            info_hash: ih,
            name: catalog.label(&ih)?.unwrap_or_else(|| meta.name.clone()),
            size: meta.length,
            pieces: held.len(),
            pieces_held: held.iter().flatten().count(),
            shared_bytes: shared,
            unique_bytes: unique,
            downloading,
            uploaded: None,
            ratio: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
