//! Pieces on demand, for the mount: a read of a piece the store lacks asks librqbit
//! for it through a file stream, which makes that piece (and a few after it) the next
//! ones requested from peers, then waits until the store holds it, verified.
//!
//! Lazy downloads (`cas get --lazy`) are torrents added with no file selected, so
//! librqbit fetches nothing of them by itself; streams are all that pull their pieces.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Engine, Source};
use crate::mount::Fetch;
use crate::{ChunkId, InfoHash};

/// The engine as the mount's source of missing pieces.
pub struct OnDemand {
    engine: Arc<Engine>,
    rt: tokio::runtime::Handle,
    /// How long a read waits for a piece before it fails with EIO.
    timeout: Duration,
}

impl OnDemand {
    pub fn new(engine: Arc<Engine>, rt: tokio::runtime::Handle, timeout: Duration) -> Self {
        OnDemand {
            engine,
            rt,
            timeout,
        }
    }
}

/// Waits until piece `piece` of torrent `ih` is stored, asking peers for it first
/// (a download not in the session is added, lazily).
pub async fn fetch_piece(engine: &Engine, ih: &InfoHash, piece: usize) -> anyhow::Result<ChunkId> {
    let handle = match engine.handle(ih) {
        Some(h) => h,
        None => {
            let bytes = engine
                .store
                .catalog()
                .download(ih)?
                .context("the torrent is not being fetched")?;
            let peers = engine.store.catalog().lazy_peers(ih)?;
            engine
                .add_with(Source::Torrent(bytes), &peers, super::Fetch::Lazy)
                .await?
                .1
        }
    };
    handle.wait_until_initialized().await?;
    let storage = engine
        .factory
        .counters(ih)
        .context("the torrent has no storage")?;
    if let Some(id) = storage.held(piece) {
        return Ok(id);
    }
    // The first file with bytes in the piece, and where in it the piece starts.
    let meta = storage.meta();
    let start = piece as u64 * u64::from(meta.piece_length);
    let end = start + meta.piece_len(piece);
    let (file_id, file) = meta
        .files
        .iter()
        .enumerate()
        .find(|(_, f)| !f.pad && f.length > 0 && f.offset < end && f.offset + f.length > start)
        .context("no file holds this piece")?;
    let within = start.saturating_sub(file.offset);
    let mut stream = handle.clone().stream(file_id).await?;
    stream.seek(SeekFrom::Start(within)).await?;
    // Returns once librqbit has the piece; the storage has stored it by then.
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    drop(stream);
    loop {
        if let Some(id) = storage.held(piece) {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Fetch for OnDemand {
    fn piece(&self, ih: &InfoHash, piece: usize) -> Result<ChunkId, String> {
        // The timer is made inside the runtime: this thread is one of the mount's.
        let wait = async {
            tokio::time::timeout(self.timeout, fetch_piece(&self.engine, ih, piece)).await
        };
        match self.rt.block_on(wait) {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!(
                "no peer sent it within {} s",
                self.timeout.as_secs_f64()
            )),
        }
    }
}
