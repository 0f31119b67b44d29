//! librqbit storage over the chunk store.
//!
//! librqbit addresses storage by (file index, offset); the store holds whole pieces.
//! Reads map the range through the file's offset in the torrent to pieces and copy
//! out of verified chunks (a few are cached: peers ask for 16 KiB blocks of the same
//! piece in a row). A piece the store lacks reads as zeros, so librqbit's own hash
//! check fails on it and never serves it.
//!
//! Writes go to a staging buffer per piece, in memory. When a piece's last byte
//! arrives it is hashed: if its SHA-1 is the torrent's, it is stored (appended to a
//! pack, readable at once) before the write returns, so librqbit only ever advertises
//! a piece the store can serve. A piece whose hash is wrong is dropped there: its
//! bytes never reach the store, and librqbit's check (reading zeros) fails it and
//! drops the peer that sent it. The engine's committer makes stored pieces durable a
//! few times a second; if a commit fails it stops every torrent, so nothing is
//! advertised that might not be there. A crash before a commit loses only pieces that
//! are fetched again (the store, not librqbit, says what is held at the next start).
//!
//! A piece the store should hold but cannot read or verify is an error, never zeros
//! sent to a peer; it stops counting as held, librqbit's check of it fails, and
//! librqbit fetches it again. Receiving is in `receive.rs`.

use std::any::TypeId;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{bail, Context};
use librqbit::storage::filesystem::FilesystemStorageFactory;
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ManagedTorrentShared, TorrentMetadata};

mod receive;

use super::staging::{self, Staging};
use crate::chunks::chunk::VerifiedChunk;
use crate::meta::parse::Metainfo;
use crate::store::cache::ChunkCache;
use crate::store::content_hash::InOrder;
use crate::store::finish;
use crate::{ChunkId, InfoHash, Store};

/// Verified chunks kept per torrent.
const CACHE_CHUNKS: usize = 8;

/// Counters of one torrent's storage.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes of pieces the store already held when the torrent was added.
    pub found: AtomicU64,
    /// Bytes of pieces received, verified and stored.
    pub stored: AtomicU64,
    /// Pieces received whose hash was wrong (dropped).
    pub rejected: AtomicU64,
}

/// Makes a [`StoreStorage`] for each torrent and keeps a handle on each.
#[derive(Clone)]
pub struct StoreStorageFactory {
    pub store: Arc<Store>,
    torrents: Arc<Mutex<HashMap<InfoHash, Arc<Inner>>>>,
    /// Pieces held, worked out before a torrent was added (see [`crate::store::content::held_pieces`]).
    prepared: Arc<Mutex<HashMap<InfoHash, Vec<Option<ChunkId>>>>>,
}

/// librqbit's saved bitfield: one bit per piece, most significant bit first.
pub fn bitfield(held: impl ExactSizeIterator<Item = bool>) -> Vec<u8> {
    let mut out = vec![0u8; held.len().div_ceil(8)];
    for (i, h) in held.enumerate() {
        if h {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

impl StoreStorageFactory {
    pub fn new(store: Arc<Store>) -> Self {
        StoreStorageFactory {
            store,
            torrents: Default::default(),
            prepared: Default::default(),
        }
    }

    /// Hands over the pieces held for a torrent about to be added.
    pub fn prepare(&self, ih: InfoHash, held: Vec<Option<ChunkId>>) {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ih, held);
    }

    /// Bytes received, verified and stored, over every torrent.
    pub fn received_total(&self) -> u64 {
        self.torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|t| t.counters.stored.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Counters of a torrent this factory made storage for.
    pub fn counters(&self, ih: &InfoHash) -> Option<Arc<Inner>> {
        self.torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ih)
            .cloned()
    }
}

impl StorageFactory for StoreStorageFactory {
    type Storage = StoreStorage;

    fn create(
        &self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<StoreStorage> {
        let ih = InfoHash(shared.info_hash.0);
        let mut meta =
            Metainfo::from_info(&metadata.info_bytes).with_context(|| format!("torrent {ih}"))?;
        meta.trackers = shared.trackers.iter().map(|u| u.to_string()).collect();
        meta.info_hash = ih;
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ih);
        let held = match prepared {
            Some(h) => h,
            None => crate::store::content::held_pieces(&self.store, &meta)?,
        };
        if held.len() != meta.pieces.len() {
            bail!("torrent {ih}: the store's record does not match the torrent");
        }
        let counters = Counters::default();
        let found: u64 = (0..held.len())
            .filter(|i| held[*i].is_some())
            .map(|i| meta.piece_len(i))
            .sum();
        counters.found.store(found, Ordering::Relaxed);
        let content = (meta.single_file
            && finish::is_content_name(&meta.name)
            && !self.store.catalog().has_torrent(&ih))
        .then(|| Mutex::new(InOrder::new()));
        let staged = Staging::new(staging::DEFAULT_LIMIT, u64::from(meta.piece_length));
        let inner = Arc::new(Inner {
            store: self.store.clone(),
            ih,
            meta,
            held: RwLock::new(held),
            staged: Mutex::new(staged),
            cache: ChunkCache::new(CACHE_CHUNKS),
            finished: AtomicBool::new(false),
            damaged: Mutex::default(),
            counters,
            content,
        });
        if !self.store.catalog().has_torrent(&ih) {
            self.store
                .catalog()
                .put_download(&ih, &inner.meta.to_torrent())?;
        }
        inner.finish_if_complete()?;
        self.torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ih, inner.clone());
        Ok(StoreStorage(inner))
    }

    /// Claims to be librqbit's filesystem storage: its fastresume store accepts no
    /// other. Sound here because the bitfields it loads are written by the engine from
    /// what the store holds, verified (see `Engine::add`).
    fn is_type_id(&self, type_id: TypeId) -> bool {
        type_id == TypeId::of::<Self>() || type_id == TypeId::of::<FilesystemStorageFactory>()
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// One torrent's view of the store.
pub struct Inner {
    store: Arc<Store>,
    ih: InfoHash,
    meta: Metainfo,
    /// The chunk of each piece, once the store holds it.
    held: RwLock<Vec<Option<ChunkId>>>,
    staged: Mutex<Staging>,
    cache: ChunkCache,
    finished: AtomicBool,
    /// Pieces whose chunk was found damaged while serving: never read as zeros (only
    /// a piece the store never held is), until the piece is stored again.
    damaged: Mutex<std::collections::HashSet<usize>>,
    pub counters: Counters,
    /// The content's BLAKE3 as pieces arrive, for torrents that may be cas's own.
    content: Option<Mutex<InOrder>>,
}

impl Inner {
    /// The chunk of a piece, if the store holds it.
    pub fn held(&self, piece: usize) -> Option<ChunkId> {
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(piece)
            .copied()
            .flatten()
    }

    /// Whether the store holds each piece.
    pub fn held_map(&self) -> Vec<bool> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        held.iter().map(Option::is_some).collect()
    }

    /// Pieces some of whose blocks arrived within `recent`, and not all.
    pub fn receiving(&self, recent: std::time::Duration) -> Vec<usize> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .receiving(recent)
    }

    pub fn meta(&self) -> &Metainfo {
        &self.meta
    }

    /// The verified chunk of a piece: `Ok(None)` if the store does not hold it; an
    /// error if it should and cannot be read or verified (the piece is then no longer
    /// counted as held, so it can be fetched again).
    fn chunk(&self, piece: usize) -> anyhow::Result<Option<Arc<VerifiedChunk>>> {
        let held = *self
            .held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(piece)
            .context("no such piece")?;
        let Some(id) = held else {
            if self
                .damaged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&piece)
            {
                bail!("piece {piece} was found damaged in the store: not served until it is fetched again");
            }
            return Ok(None);
        };
        match self.cache.get(&self.store, &id) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                tracing::error!("torrent {}: piece {piece}: {e}", self.ih);
                self.damaged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(piece);
                self.held.write().unwrap_or_else(|e| e.into_inner())[piece] = None;
                Err(anyhow::Error::new(e).context(format!("piece {piece}")))
            }
        }
    }

    /// The torrent's figures, for callers outside the engine.
    pub fn counts(&self) -> super::PieceCounts {
        let (held, pieces) = self.progress();
        super::PieceCounts {
            pieces,
            held,
            found_bytes: self.counters.found.load(Ordering::Relaxed),
            stored_bytes: self.counters.stored.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
        }
    }

    /// Pieces held and total.
    pub fn progress(&self) -> (usize, usize) {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        (held.iter().filter(|h| h.is_some()).count(), held.len())
    }
}

/// The storage librqbit holds for one torrent.
pub struct StoreStorage(Arc<Inner>);

impl StoreStorage {
    fn offset(&self, file_id: usize, offset: u64) -> anyhow::Result<u64> {
        let f = self.0.meta.files.get(file_id).context("no such file")?;
        Ok(f.offset + offset)
    }
}

impl TorrentStorage for StoreStorage {
    fn init(&mut self, _: &ManagedTorrentShared, _: &TorrentMetadata) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        let start = self.offset(file_id, offset)?;
        let inner = &self.0;
        if start + buf.len() as u64 > inner.meta.length {
            bail!("read past the end of the torrent");
        }
        let plen = u64::from(inner.meta.piece_length);
        let mut done = 0usize;
        while done < buf.len() {
            let at = start + done as u64;
            let piece = (at / plen) as usize;
            let within = (at % plen) as usize;
            let take = (buf.len() - done).min(plen as usize - within);
            let out = &mut buf[done..done + take];
            match inner.chunk(piece)? {
                Some(c) => {
                    let (data, zeros) = crate::store::content::piece_bytes(c.bytes(), within, take);
                    out[..data.len()].copy_from_slice(data);
                    out[data.len()..].fill(0);
                    debug_assert_eq!(data.len() + zeros, take);
                }
                // Not held: zeros, which fail librqbit's hash check.
                None => out.fill(0),
            }
            done += take;
        }
        Ok(())
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.0.write(self.offset(file_id, offset)?, buf)
    }

    /// Calls are memory copies and reads of pack files (mostly from the page cache);
    /// a received piece is hashed and appended, made durable by the committer.
    fn is_fast(&self) -> bool {
        true
    }

    /// The store is the authority on what it holds: a piece counts only once it was
    /// hashed and put (`Inner::complete_piece`), so librqbit need not read it back and
    /// hash it again.
    fn verify_piece(
        &self,
        piece: librqbit_core::lengths::ValidPieceIndex,
    ) -> Option<anyhow::Result<bool>> {
        Some(Ok(self.0.held(piece.get() as usize).is_some()))
    }

    fn on_piece_completed(&self, _: librqbit_core::lengths::ValidPieceIndex) -> anyhow::Result<()> {
        self.0.finish_if_complete()
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _: usize, _: u64) -> anyhow::Result<()> {
        Ok(())
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(StoreStorage(self.0.clone())))
    }
}
