//! librqbit on its own: the engine cas is built on, with librqbit's own file storage and
//! no store behind it. `benches/transfer.sh` runs a seeder and a leecher of this beside
//! cas -> cas, to show how much of cas's time is the engine's.
//!
//! ```text
//! rqbit_pair [OPTIONS] seed FILE.torrent DIR      seeds DIR/<name>; prints "seeding on PORT"
//! rqbit_pair [OPTIONS] get FILE.torrent DIR PEER  downloads into DIR from PEER, then exits
//! ```
//!
//! The options wrap librqbit's file storage in one that uses the storage hooks of the
//! vendored librqbit (`vendor/librqbit/PATCHES.md`), as cas's store does: `--fast` says
//! the storage is fast (`TorrentStorage::is_fast`: calls inline, no `block_in_place`);
//! `--stage` keeps each piece in memory as its blocks are written and hashes it when
//! it is whole, as cas's store does before it stores a piece; `--verify` does that too
//! and answers librqbit's piece check from it (`TorrentStorage::verify_piece`: no
//! read-back, no second SHA-1). `--stage` against `--verify` is what the hook saves a
//! storage like cas's.
//!
//! Both listen on 127.0.0.1 on a port the OS picks, with DHT, LSD, trackers and UPnP off,
//! and no persistence: the same session settings as cas's engine, less the store. Run
//! without arguments (as `cargo bench` and `cargo test --all-targets` do), it only says
//! how to use it.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use librqbit::storage::filesystem::FilesystemStorageFactory;
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerMode, ListenerOptions,
    ManagedTorrentShared, Session, SessionOptions, TorrentMetadata,
};
use librqbit_core::lengths::ValidPieceIndex;
use sha1::{Digest, Sha1};

const USAGE: &str = "usage: rqbit_pair [--fast] [--stage] [--verify] seed FILE.torrent DIR | \
     rqbit_pair [--fast] [--stage] [--verify] get FILE.torrent DIR PEER";

/// Which storage hooks the wrapped file storage uses.
#[derive(Clone, Copy, Default)]
struct Hooks {
    fast: bool,
    stage: bool,
    verify: bool,
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut hooks = Hooks::default();
    args.retain(|a| match a.as_str() {
        "--fast" => {
            hooks.fast = true;
            false
        }
        "--stage" => {
            hooks.stage = true;
            false
        }
        "--verify" => {
            hooks.stage = true;
            hooks.verify = true;
            false
        }
        _ => true,
    });
    let (seed, torrent, dir, peer) = match args.as_slice() {
        [mode, torrent, dir] if mode == "seed" => (true, torrent, dir, None),
        [mode, torrent, dir, peer] if mode == "get" => {
            let peer: SocketAddr = peer.parse().with_context(|| format!("peer {peer:?}"))?;
            (false, torrent, dir, Some(peer))
        }
        _ => {
            eprintln!("{USAGE}");
            return Ok(());
        }
    };
    let bytes = std::fs::read(torrent).with_context(|| format!("reading {torrent}"))?;
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = rt.block_on(run(seed, bytes, dir, peer, hooks));
    // A download is written (through the page cache, as librqbit leaves it) once it
    // completes: the process exits without the session's stop, as `cas get` does.
    rt.shutdown_background();
    done
}

async fn run(
    seed: bool,
    torrent: Vec<u8>,
    dir: PathBuf,
    peer: Option<SocketAddr>,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let session = Session::new_with_opts(
        dir.clone(),
        SessionOptions {
            dht: None,
            persistence: None,
            disable_local_service_discovery: true,
            listen: Some(ListenerOptions {
                mode: ListenerMode::TcpOnly,
                listen_addr: "127.0.0.1:0".parse()?,
                ipv4_only: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .context("starting the librqbit session")?;
    let added = session
        .add_torrent(
            AddTorrent::from_bytes(torrent),
            Some(AddTorrentOptions {
                overwrite: true,
                disable_trackers: true,
                initial_peers: peer.map(|p| vec![p]),
                output_folder: Some(dir.to_string_lossy().into_owned()),
                storage_factory: (hooks.fast || hooks.stage)
                    .then(|| HookedFactory { hooks }.boxed()),
                ..Default::default()
            }),
        )
        .await
        .context("adding the torrent")?;
    let handle = match added {
        AddTorrentResponse::Added(_, h) | AddTorrentResponse::AlreadyManaged(_, h) => h,
        AddTorrentResponse::ListOnly(_) => bail!("librqbit only listed the torrent"),
    };
    handle.wait_until_completed().await?;
    let stats = handle.stats();
    if seed {
        let port = session.listen_addr().context("no listen address")?.port();
        println!("seeding on {port}");
        tokio::signal::ctrl_c().await?;
    } else {
        println!(
            "{{\"bytes\": {}, \"seconds\": {:.3}}}",
            stats.progress_bytes,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    session.stop().await;
    Ok(())
}

/// librqbit's file storage, with the hooks asked for.
#[derive(Clone)]
struct HookedFactory {
    hooks: Hooks,
}

impl StorageFactory for HookedFactory {
    type Storage = Hooked;

    fn create(
        &self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<Hooked> {
        let inner: Box<dyn TorrentStorage> =
            Box::new(FilesystemStorageFactory::default().create(shared, metadata)?);
        let info = &metadata.info;
        let lengths = *info.lengths();
        let piece_hashes = (0..lengths.total_pieces())
            .map(|p| {
                let mut h = [0; 20];
                h.copy_from_slice(
                    info.info()
                        .pieces
                        .as_ref()
                        .get(p as usize * 20..p as usize * 20 + 20)?,
                );
                Some(h)
            })
            .collect::<Option<Vec<_>>>()
            .context("piece hashes")?;
        Ok(Hooked {
            inner,
            hooks: self.hooks,
            checks: Arc::new(Checks {
                piece_length: u64::from(lengths.default_piece_length()),
                total_length: lengths.total_length(),
                file_offsets: metadata
                    .file_infos
                    .iter()
                    .map(|f| f.offset_in_torrent)
                    .collect(),
                piece_hashes,
                staged: Mutex::new(HashMap::new()),
                checked: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// Pieces being received (bytes and which 16 KiB blocks are in) and the outcome of the
/// hash of each piece whose blocks are all in.
struct Checks {
    piece_length: u64,
    total_length: u64,
    file_offsets: Vec<u64>,
    piece_hashes: Vec<[u8; 20]>,
    staged: Mutex<HashMap<u32, Staged>>,
    checked: Mutex<HashMap<u32, bool>>,
}

/// A piece being received: its bytes, and which of its 16 KiB blocks are in.
struct Staged {
    bytes: Vec<u8>,
    have: Vec<bool>,
}

const BLOCK: u64 = 16 << 10;

impl Checks {
    /// `parts` written one after the other from `offset`: one block, maybe in two parts.
    fn written(&self, file_id: usize, offset: u64, parts: &[&[u8]]) -> anyhow::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let start = self.file_offsets.get(file_id).context("file id")? + offset;
        let piece = start / self.piece_length;
        let plen = self
            .piece_length
            .min(self.total_length.saturating_sub(piece * self.piece_length));
        let at = start - piece * self.piece_length;
        let end = at + len as u64;
        if end > plen || !at.is_multiple_of(BLOCK) {
            bail!("a write across pieces or blocks: offset {start}, {len} bytes");
        }
        let piece = u32::try_from(piece)?;
        let complete = {
            let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            let st = staged.entry(piece).or_insert_with(|| Staged {
                bytes: vec![0; plen as usize],
                have: vec![false; plen.div_ceil(BLOCK) as usize],
            });
            let mut pos = at as usize;
            for part in parts {
                st.bytes[pos..pos + part.len()].copy_from_slice(part);
                pos += part.len();
            }
            for b in at / BLOCK..end.div_ceil(BLOCK) {
                st.have[b as usize] = true;
            }
            if st.have.iter().all(|h| *h) {
                staged.remove(&piece).map(|st| st.bytes)
            } else {
                None
            }
        };
        if let Some(buf) = complete {
            let hash: [u8; 20] = Sha1::digest(&buf).into();
            let good = self.piece_hashes.get(piece as usize) == Some(&hash);
            self.checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(piece, good);
        }
        Ok(())
    }
}

struct Hooked {
    inner: Box<dyn TorrentStorage>,
    hooks: Hooks,
    checks: Arc<Checks>,
}

impl TorrentStorage for Hooked {
    fn init(
        &mut self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<()> {
        self.inner.init(shared, metadata)
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.inner.pread_exact(file_id, offset, buf)
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        if self.hooks.stage {
            self.checks.written(file_id, offset, &[buf])?;
        }
        self.inner.pwrite_all(file_id, offset, buf)
    }

    fn pwrite_all_vectored(
        &self,
        file_id: usize,
        offset: u64,
        bufs: [IoSlice<'_>; 2],
    ) -> anyhow::Result<usize> {
        if self.hooks.stage {
            self.checks
                .written(file_id, offset, &[&bufs[0], &bufs[1]])?;
        }
        self.inner.pwrite_all_vectored(file_id, offset, bufs)
    }

    fn remove_file(&self, file_id: usize, filename: &Path) -> anyhow::Result<()> {
        self.inner.remove_file(file_id, filename)
    }

    fn remove_directory_if_empty(&self, path: &Path) -> anyhow::Result<()> {
        self.inner.remove_directory_if_empty(path)
    }

    fn ensure_file_length(&self, file_id: usize, length: u64) -> anyhow::Result<()> {
        self.inner.ensure_file_length(file_id, length)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(Hooked {
            inner: self.inner.take()?,
            hooks: self.hooks,
            checks: self.checks.clone(),
        }))
    }

    fn on_piece_completed(&self, piece: ValidPieceIndex) -> anyhow::Result<()> {
        self.inner.on_piece_completed(piece)
    }

    fn is_fast(&self) -> bool {
        self.hooks.fast
    }

    /// The outcome of the hash taken as the piece's last block was written; a piece not
    /// seen whole here (e.g. found on disk at start) is left to librqbit to read back.
    fn verify_piece(&self, piece: ValidPieceIndex) -> Option<anyhow::Result<bool>> {
        if !self.hooks.verify {
            return None;
        }
        self.checks
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&piece.get())
            .map(Ok)
    }
}
