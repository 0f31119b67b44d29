//! Pieces on demand, for the mount: a read of a piece the store lacks asks librqbit
//! for it through a file stream, which makes that piece (and a few after it) the next
//! ones requested from peers, then waits until the store holds it, verified.
//!
//! Lazy downloads (`cas get --lazy`) are torrents added with no file selected, so
//! librqbit fetches nothing of them by itself; streams are all that pull their pieces.
//!
//! The mount keeps a piece's stream open a little after the piece came, parked at its
//! file's end ([`Parking`]). With no stream left, librqbit 9.1 counts a lazy torrent
//! finished and closes its connection to a seeder; a stream opened while that
//! connection is still closing makes librqbit connect again, and its record of the
//! peer (one per address) then mixes the two connections up: pieces go on being asked
//! of the one that never answers, and ten seconds later the peer is dropped for good
//! ("peer was in a wrong state Dead, ignoring it forever"), so the read waits until
//! its time limit. Reads that follow each other, as a file read whole makes, then
//! never leave the torrent without a stream.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncSeek, AsyncSeekExt};

use super::{Engine, Source};
use crate::mount::Fetch;
use crate::{ChunkId, InfoHash};

/// How long a stream stays parked after its piece came.
const PARKED_FOR: Duration = Duration::from_secs(2);
/// Streams parked at once, at most: each holds one of librqbit's blocking-work
/// permits while it is open.
const PARKED_AT_MOST: usize = 8;

/// The engine as the mount's source of missing pieces.
pub struct OnDemand {
    engine: Arc<Engine>,
    rt: tokio::runtime::Handle,
    /// How long a read waits for a piece before it fails with EIO.
    timeout: Duration,
    parking: Parking,
}

impl OnDemand {
    pub fn new(engine: Arc<Engine>, rt: tokio::runtime::Handle, timeout: Duration) -> Self {
        OnDemand {
            engine,
            rt,
            timeout,
            parking: Parking::default(),
        }
    }
}

/// The last stream of each torrent a read fetched from, kept open at its file's end
/// for [`PARKED_FOR`] (see the module doc). At the end, the stream asks for nothing
/// but the file's last piece (when the file does not end on a piece boundary).
#[derive(Clone, Default)]
struct Parking(Arc<Mutex<Parked>>);

#[derive(Default)]
struct Parked {
    next: u64,
    streams: HashMap<InfoHash, (u64, Box<dyn Send>)>,
}

impl Parking {
    async fn park<S>(&self, ih: InfoHash, mut stream: S)
    where
        S: AsyncSeek + Unpin + Send + 'static,
    {
        if stream.seek(SeekFrom::End(0)).await.is_err() {
            return;
        }
        // Streams let go of are dropped outside the lock.
        let mut gone = Vec::new();
        let id = {
            let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
            p.next += 1;
            let id = p.next;
            gone.extend(p.streams.insert(ih, (id, Box::new(stream))));
            while p.streams.len() > PARKED_AT_MOST {
                let oldest = p
                    .streams
                    .iter()
                    .min_by_key(|(_, (n, _))| *n)
                    .map(|(k, _)| *k);
                gone.extend(oldest.and_then(|k| p.streams.remove(&k)));
            }
            id
        };
        drop(gone);
        let parking = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_FOR).await;
            let gone = {
                let mut p = parking.0.lock().unwrap_or_else(|e| e.into_inner());
                match p.streams.get(&ih) {
                    Some((n, _)) if *n == id => p.streams.remove(&ih),
                    _ => None,
                }
            };
            drop(gone);
        });
    }
}

/// Waits until piece `piece` of torrent `ih` is stored, asking peers for it first
/// (a download not in the session is added, lazily).
pub async fn fetch_piece(engine: &Engine, ih: &InfoHash, piece: usize) -> anyhow::Result<ChunkId> {
    fetch(engine, ih, piece, None).await
}

/// [`fetch_piece`], the stream parked afterwards when `parking` is given and the
/// torrent is not yet whole.
async fn fetch(
    engine: &Engine,
    ih: &InfoHash,
    piece: usize,
    parking: Option<&Parking>,
) -> anyhow::Result<ChunkId> {
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
    let (held, all) = storage.progress();
    match parking {
        Some(p) if held < all => p.park(*ih, stream).await,
        _ => drop(stream),
    }
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
            let fetch = fetch(&self.engine, ih, piece, Some(&self.parking));
            tokio::time::timeout(self.timeout, fetch).await
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
