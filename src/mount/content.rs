//! A torrent's bytes for the mount: out of its record's chunks when the store holds
//! it, or, for a download, piece by piece, asking a [`Fetch`] for what is missing.
//!
//! Only verified bytes come out: every chunk is read through the store, which checks
//! it against its BLAKE3; a piece that cannot be had is an error, never zeros.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use cas_fuse::TreeError;

use crate::catalog::TorrentKind;
use crate::meta::parse::Metainfo;
use crate::store::cache::ChunkCache;
use crate::{ChunkId, InfoHash, Store};

/// Chunks kept for reads: the kernel reads a piece in several requests.
const CACHE_CHUNKS: usize = 16;

/// Pieces after the one read that are loaded and verified ahead, on another thread.
const AHEAD: usize = 3;

/// Where missing pieces come from: the BitTorrent engine, when one runs.
pub trait Fetch: Send + Sync {
    /// Blocks until piece `piece` of torrent `ih` is stored, and returns its chunk.
    /// Fails (with a message) when the piece cannot be had in the time allowed.
    fn piece(&self, ih: &InfoHash, piece: usize) -> Result<ChunkId, String>;
}

pub(super) fn io(e: impl std::fmt::Display) -> TreeError {
    TreeError::Io(e.to_string())
}

/// One torrent as the mount sees it.
pub(super) struct TorrentView {
    pub ih: InfoHash,
    pub meta: Metainfo,
    /// What the record says it carries; `None` for a download.
    pub kind: Option<TorrentKind>,
    /// The chunk of every piece, from the record; `None` for a download.
    pieces: Option<Vec<ChunkId>>,
}

impl TorrentView {
    /// The torrent `ih` from its record, else from its download; `None` if neither.
    pub fn load(store: &Store, ih: &InfoHash) -> Result<Option<TorrentView>, TreeError> {
        let catalog = store.catalog();
        let (bytes, kind, pieces) = match catalog.torrent(ih).map_err(io)? {
            Some(r) => (r.metainfo, Some(r.kind), Some(r.pieces)),
            None => match catalog.download(ih).map_err(io)? {
                Some(b) => (b, None, None),
                None => return Ok(None),
            },
        };
        let meta = Metainfo::parse(&bytes).map_err(|e| io(format!("torrent {ih}: {e}")))?;
        if pieces
            .as_ref()
            .is_some_and(|p| p.len() != meta.pieces.len())
        {
            return Err(io(format!("torrent {ih}: record and .torrent disagree")));
        }
        Ok(Some(TorrentView {
            ih: *ih,
            meta,
            kind,
            pieces,
        }))
    }

    pub fn is_download(&self) -> bool {
        self.pieces.is_none()
    }
}

/// Reads torrents' bytes through a small cache of verified chunks; the pieces after
/// the one read are loaded and verified ahead on a thread of their own.
pub(super) struct Reader {
    store: Arc<Store>,
    fetch: Option<Arc<dyn Fetch>>,
    views: Mutex<HashMap<InfoHash, Arc<TorrentView>>>,
    chunks: Arc<ChunkCache>,
    ahead: Mutex<Sender<ChunkId>>,
}

impl Reader {
    pub fn new(store: Arc<Store>, fetch: Option<Arc<dyn Fetch>>) -> Self {
        let chunks = Arc::new(ChunkCache::new(CACHE_CHUNKS));
        let (tx, rx) = channel::<ChunkId>();
        let (s, c) = (store.clone(), chunks.clone());
        // Ends when the reader (the sender) goes.
        std::thread::spawn(move || {
            for id in rx {
                let _ = c.get(&s, &id);
            }
        });
        Reader {
            store,
            fetch,
            views: Mutex::new(HashMap::new()),
            chunks,
            ahead: Mutex::new(tx),
        }
    }

    /// The torrent `ih` (a download is looked at again once it has a record).
    pub fn view(&self, ih: &InfoHash) -> Result<Arc<TorrentView>, TreeError> {
        let known = self
            .views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ih)
            .cloned();
        if let Some(v) = known {
            if !(v.is_download() && self.store.catalog().has_torrent(ih)) {
                return Ok(v);
            }
        }
        let v = Arc::new(TorrentView::load(&self.store, ih)?.ok_or(TreeError::NotFound)?);
        self.views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*ih, v.clone());
        Ok(v)
    }

    fn chunk_id(&self, t: &TorrentView, piece: usize) -> Result<ChunkId, TreeError> {
        if let Some(p) = &t.pieces {
            return p
                .get(piece)
                .copied()
                .ok_or_else(|| io("piece beyond the torrent"));
        }
        let sha1 = t
            .meta
            .pieces
            .get(piece)
            .ok_or_else(|| io("piece beyond the torrent"))?;
        if let Some(id) = self.store.find_by_sha1(sha1).map_err(io)?.first() {
            return Ok(*id);
        }
        match &self.fetch {
            Some(f) => f.piece(&t.ih, piece).map_err(|e| {
                tracing::warn!("piece {piece} of torrent {}: {e}", t.ih);
                TreeError::Io(e)
            }),
            None => Err(io(format!(
                "piece {piece} of torrent {} is not stored (`cas serve --mount` fetches it)",
                t.ih
            ))),
        }
    }

    /// Asks for the pieces after `piece` of a stored torrent to be loaded ahead.
    fn read_ahead(&self, t: &TorrentView, piece: usize) {
        let Some(pieces) = &t.pieces else {
            return; // a download's pieces may need fetching: only reads ask for them
        };
        let tx = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        for id in pieces.iter().skip(piece + 1).take(AHEAD) {
            if self.chunks.cached(id).is_none() {
                let _ = tx.send(*id);
            }
        }
    }

    /// Bytes `start..end` of the torrent's content, lent from the chunk that holds
    /// them when one does (no copy), else copied.
    pub fn read_shared(
        &self,
        t: &TorrentView,
        start: u64,
        end: u64,
    ) -> Result<cas_fuse::ReadBytes, TreeError> {
        let end = end.min(t.meta.length);
        let plen = u64::from(t.meta.piece_length);
        if start < end && start / plen == (end - 1) / plen {
            let piece = (start / plen) as usize;
            self.read_ahead(t, piece);
            let chunk = self
                .chunks
                .get(&self.store, &self.chunk_id(t, piece)?)
                .map_err(io)?;
            let from = (start % plen) as usize;
            let to = from + (end - start) as usize;
            if to <= chunk.bytes().len() {
                return Ok(cas_fuse::ReadBytes::Shared {
                    buf: chunk,
                    range: from..to,
                });
            }
        }
        self.read(t, start, end).map(cas_fuse::ReadBytes::Owned)
    }

    /// Bytes `start..end` of the torrent's content (offsets in the torrent).
    pub fn read(&self, t: &TorrentView, start: u64, end: u64) -> Result<Vec<u8>, TreeError> {
        let end = end.min(t.meta.length);
        let plen = u64::from(t.meta.piece_length);
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mut at = start;
        if start < end {
            self.read_ahead(t, ((end - 1) / plen) as usize);
        }
        while at < end {
            let piece = (at / plen) as usize;
            let within = (at % plen) as usize;
            let take = ((end - at) as usize).min(plen as usize - within);
            let chunk = self
                .chunks
                .get(&self.store, &self.chunk_id(t, piece)?)
                .map_err(io)?;
            let (data, zeros) = crate::store::content::piece_bytes(chunk.bytes(), within, take);
            out.extend_from_slice(data);
            out.resize(out.len() + zeros, 0);
            at += take as u64;
        }
        Ok(out)
    }
}
