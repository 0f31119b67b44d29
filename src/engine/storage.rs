//! librqbit storage over the chunk store.
//!
//! librqbit addresses storage by (file index, offset); the store holds whole pieces.
//! A read maps the range through the file's offset in the torrent to pieces, and
//! copies out of verified chunks (a few are cached, since peers ask for 16 KiB blocks
//! of the same piece in a row). A piece the store lacks, or cannot verify, reads as
//! zeros: librqbit's own hash check then fails on it and the piece is not served.
//!
//! This storage is read-only: writes are refused.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ManagedTorrentShared, TorrentMetadata};

use crate::store::chunk::VerifiedChunk;
use crate::{ChunkId, InfoHash, Store};

/// Verified chunks kept per torrent.
const CACHE_CHUNKS: usize = 8;

/// Makes a [`StoreStorage`] for each torrent of the catalog.
#[derive(Clone)]
pub struct StoreStorageFactory {
    pub store: Arc<Store>,
}

impl StorageFactory for StoreStorageFactory {
    type Storage = StoreStorage;

    fn create(
        &self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<StoreStorage> {
        let ih = InfoHash(shared.info_hash.0);
        let record = self
            .store
            .catalog()
            .torrent(&ih)?
            .with_context(|| format!("torrent {ih} is not in the store"))?;
        Ok(StoreStorage {
            store: self.store.clone(),
            pieces: Arc::new(record.pieces),
            piece_length: u64::from(record.piece_length),
            length: record.length,
            file_offsets: metadata
                .file_infos
                .iter()
                .map(|f| f.offset_in_torrent)
                .collect(),
            cache: Arc::new(Mutex::new(VecDeque::new())),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// One torrent's view of the store.
pub struct StoreStorage {
    store: Arc<Store>,
    pieces: Arc<Vec<ChunkId>>,
    piece_length: u64,
    length: u64,
    file_offsets: Vec<u64>,
    cache: Arc<Mutex<VecDeque<Arc<VerifiedChunk>>>>,
}

impl StoreStorage {
    fn chunk(&self, id: &ChunkId) -> Option<Arc<VerifiedChunk>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.iter().find(|c| c.id() == *id) {
            return Some(c.clone());
        }
        drop(cache);
        let chunk = match self.store.get(id) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!("serving torrent piece: {e}");
                return None;
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CHUNKS {
            cache.pop_front();
        }
        cache.push_back(chunk.clone());
        Some(chunk)
    }
}

impl TorrentStorage for StoreStorage {
    fn init(&mut self, _: &ManagedTorrentShared, _: &TorrentMetadata) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        let start = self.file_offsets.get(file_id).context("no such file")? + offset;
        if start + buf.len() as u64 > self.length {
            bail!("read past the end of the torrent");
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = start + done as u64;
            let piece = (at / self.piece_length) as usize;
            let within = (at % self.piece_length) as usize;
            let take = (buf.len() - done).min(self.piece_length as usize - within);
            let out = &mut buf[done..done + take];
            match self.pieces.get(piece).and_then(|id| self.chunk(id)) {
                Some(c) if c.len() >= within + take => {
                    out.copy_from_slice(&c.bytes()[within..within + take])
                }
                _ => out.fill(0),
            }
            done += take;
        }
        Ok(())
    }

    fn pwrite_all(&self, _: usize, _: u64, _: &[u8]) -> anyhow::Result<()> {
        bail!("this torrent is served read-only from the store")
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
        Ok(Box::new(StoreStorage {
            store: self.store.clone(),
            pieces: self.pieces.clone(),
            piece_length: self.piece_length,
            length: self.length,
            file_offsets: self.file_offsets.clone(),
            cache: self.cache.clone(),
        }))
    }
}
