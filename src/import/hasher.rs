//! Storing one file: read it piece by piece, hash pieces on every core, store the
//! pieces the store lacks.
//!
//! One reader thread reads pieces in order and feeds the whole-file BLAKE3; worker
//! threads compute each piece's BLAKE3 (its chunk id) and, only for chunks the index
//! does not know, its plain SHA-1 (no collision detection here: that runs lazily, in
//! [`Store::find_by_sha1`]); the calling thread stores new chunks in order. A piece
//! already stored costs one BLAKE3 and one index lookup: its SHA-1 comes from the
//! index.
//!
//! A sparse file is read by its data: the reader asks where data lies
//! (`lseek(SEEK_DATA)`, `lseek(SEEK_HOLE)`) and a piece that lies wholly in a hole is
//! a zero piece, neither read nor hashed piece by piece (the zero chunk of that
//! length is hashed once per file); only the whole-file BLAKE3 goes over its zeros.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use crate::chunks::chunk::{Hashed, Padded, VerifiedChunk};
use crate::chunks::index::Index;
use crate::store::Store;
use crate::{ChunkId, ContentId, Error, PieceHash, Result};

/// A stored piece: its identity and the SHA-1 a torrent lists for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Piece {
    pub id: ChunkId,
    pub sha1: PieceHash,
}

/// What storing a file produced.
#[derive(Debug)]
pub struct StoredFile {
    pub content: ContentId,
    pub size: u64,
    pub pieces: Vec<Piece>,
    /// The last piece padded with zeros to the piece length (for a BEP 47 directory
    /// torrent), when asked for and the file does not end on a piece boundary: the
    /// file's last chunk (`id`, the same as the last of `pieces`) and the padded
    /// piece's SHA-1. No chunk is stored for it: a padded lookup finds the short one.
    pub padded_tail: Option<Piece>,
    /// Pack bytes written for this file.
    pub new_bytes: u64,
}

fn hash_piece(index: &Index, bytes: Vec<u8>) -> Result<Hashed> {
    VerifiedChunk::hash_unless_known(bytes, |id| Ok(index.get(id)?.map(|e| e.sha1)))
}

/// The error for a file that is not as the walk saw it, or changed while read.
pub(super) fn changed(path: &Path) -> Error {
    Error::BadInput {
        path: path.to_path_buf(),
        reason: "file changed while being read; import again when it is quiet".into(),
    }
}

/// Opens `path` (no symlink followed, no FIFO waited on) and checks that it is the
/// regular file of the walk's metadata `expect`: its handle and metadata then.
pub(super) fn open_as_seen(
    path: &Path,
    expect: &std::fs::Metadata,
) -> Result<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(Error::io(path, "open"))?;
    let before = file.metadata().map_err(Error::io(path, "read metadata"))?;
    if !before.is_file() || before.ino() != expect.ino() || before.len() != expect.len() {
        return Err(changed(path));
    }
    Ok((file, before))
}

/// Whether a file read whole is as it was when opened: its size and mtime.
pub(super) fn unchanged(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    after.len() == before.len()
        && after.mtime() == before.mtime()
        && after.mtime_nsec() == before.mtime_nsec()
}

/// Reads `path` and stores its pieces. `expect` is the metadata seen by the walk: a
/// file that differs from it, or changes while being read, is refused.
pub fn store_file(
    store: &Store,
    path: &Path,
    expect: &std::fs::Metadata,
    piece_length: u32,
    pad_tail: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StoredFile> {
    let changed = || changed(path);
    let (file, before) = open_as_seen(path, expect)?;
    let size = before.len();
    let pl = u64::from(piece_length);
    let count = size.div_ceil(pl) as usize;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let index = store.chunks().index().clone();

    let (work_tx, work_rx) = sync_channel::<Job>(threads * 8);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Result<Done>>(threads * 8);

    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<ContentId> {
            let mut hasher = blake3::Hasher::new();
            let mut holes = Holes::new(&file, size);
            for i in 0..count {
                let at = i as u64 * pl;
                let len = (size - at).min(pl) as usize;
                let pad = (pad_tail && i + 1 == count && len < pl as usize).then_some(piece_length);
                let bytes = if holes.is_hole(at, len as u64) {
                    feed_zeros(&mut hasher, len);
                    Bytes::Hole(len)
                } else {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, at)
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::UnexpectedEof => changed(),
                            _ => Error::io(path, "read")(e),
                        })?;
                    hasher.update(&buf);
                    Bytes::Data(buf)
                };
                if work_tx.send((i, bytes, pad)).is_err() {
                    return Ok(ContentId([0; 32]));
                }
            }
            let mut probe = [0u8; 1];
            if file
                .read_at(&mut probe, size)
                .map_err(Error::io(path, "read"))?
                != 0
            {
                return Err(changed());
            }
            Ok(ContentId(*hasher.finalize().as_bytes()))
        });
        for _ in 0..threads {
            let (rx, tx, index) = (work_rx.clone(), done_tx.clone(), index.clone());
            s.spawn(move || worker(&rx, &tx, &index));
        }
        // Only the workers hold these now: when they stop, the reader's sends fail and
        // the collector's receive ends, whichever side stopped first.
        drop(done_tx);
        drop(work_rx);

        let result = collect(store, done_rx, count, progress);
        let content = reader
            .join()
            .map_err(|_| Error::Invalid(format!("reader of {} panicked", path.display())))??;
        let (pieces, padded_tail, new_bytes) = result?;
        if pieces.len() != count {
            return Err(changed());
        }
        let after = std::fs::symlink_metadata(path).map_err(Error::io(path, "read metadata"))?;
        if !unchanged(&before, &after) {
            return Err(changed());
        }
        Ok(StoredFile {
            content,
            size,
            pieces,
            padded_tail,
            new_bytes,
        })
    })
}

/// A piece's bytes as read, or the length of a piece that lies in a hole.
enum Bytes {
    Data(Vec<u8>),
    Hole(usize),
}

/// A piece to hash: its index, its bytes, and the length to pad it to for the
/// directory torrent (the file's last piece, when it is short).
type Job = (usize, Bytes, Option<u32>);

/// A piece hashed (and its padded form), or a hole's zero piece: its length and
/// the length to pad it to.
enum Hashing {
    Data(Hashed, Option<Padded>),
    Hole(usize, Option<u32>),
}
type Done = (usize, Hashing);

static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Hashes `n` zeros (a hole) on every core: the hole is not read, so the file's
/// BLAKE3 over its zeros is all the work there is, and the piece workers are idle.
fn feed_zeros(hasher: &mut blake3::Hasher, mut n: usize) {
    while n > 0 {
        let k = n.min(ZEROS.len());
        hasher.update_rayon(&ZEROS[..k]);
        n -= k;
    }
}

/// Where a file's data lies, asked of the file system as the reader goes
/// (`SEEK_DATA`, `SEEK_HOLE`). A file system that cannot tell says all is data.
pub(super) struct Holes<'f> {
    file: &'f std::fs::File,
    size: u64,
    /// No data in `from..data`, data from `data` to `hole` (end of what is known).
    data: u64,
    hole: u64,
}

impl<'f> Holes<'f> {
    pub(super) fn new(file: &'f std::fs::File, size: u64) -> Self {
        Holes {
            file,
            size,
            data: 0,
            hole: 0,
        }
    }

    fn seek(&self, from: u64, whence: libc::c_int) -> Option<u64> {
        let from = libc::off_t::try_from(from).ok()?;
        // SAFETY: lseek on a file descriptor this struct borrows; no memory is passed.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), from, whence) };
        u64::try_from(r).ok()
    }

    /// Whether `at..at + len` lies wholly in a hole. Asked in increasing `at`.
    pub(super) fn is_hole(&mut self, at: u64, len: u64) -> bool {
        if at >= self.hole {
            match self.seek(at, libc::SEEK_DATA) {
                Some(d) => {
                    self.data = d;
                    self.hole = self
                        .seek(d, libc::SEEK_HOLE)
                        .unwrap_or(self.size)
                        .max(d + 1);
                }
                None if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => {
                    // No data from `at` to the end.
                    self.data = self.size;
                    self.hole = u64::MAX;
                }
                None => {
                    // Cannot tell: read everything.
                    self.data = at;
                    self.hole = u64::MAX;
                }
            }
        }
        self.data >= at + len
    }
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    tx: &std::sync::mpsc::SyncSender<Result<Done>>,
    index: &Index,
) {
    loop {
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((i, bytes, pad)) = job else { return };
        let done = match bytes {
            Bytes::Data(bytes) => {
                let padded = pad.and_then(|len| Padded::hash(&bytes, len));
                hash_piece(index, bytes).map(|h| (i, Hashing::Data(h, padded)))
            }
            Bytes::Hole(len) => Ok((i, Hashing::Hole(len, pad))),
        };
        if tx.send(done).is_err() {
            return;
        }
    }
}

/// Receives hashed pieces, stores new ones in piece order, and returns the pieces,
/// the padded tail (its padded lookup to be indexed at the next commit) and the pack
/// bytes written.
fn collect(
    store: &Store,
    done: Receiver<Result<Done>>,
    count: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<Piece>, Option<Piece>, u64)> {
    let mut waiting = std::collections::BTreeMap::new();
    let mut pieces = Vec::with_capacity(count);
    let mut tail = None;
    let mut new_bytes = 0;
    // The zero chunk of each length a hole gave, hashed once.
    let mut zeros: std::collections::HashMap<usize, Piece> = Default::default();
    for msg in done {
        let (i, hashing) = msg?;
        waiting.insert(i, hashing);
        while let Some(hashing) = waiting.remove(&pieces.len()) {
            let (h, padded, hole) = match hashing {
                Hashing::Data(h, padded) => (h, padded, None),
                Hashing::Hole(len, pad) => {
                    let padded = pad.and_then(|p| Padded::hash(&vec![0; len], p));
                    let h = match zeros.get(&len) {
                        Some(&piece) => Hashed::Known {
                            id: piece.id,
                            sha1: piece.sha1,
                        },
                        None => hash_piece(store.chunks().index(), vec![0; len])?,
                    };
                    (h, padded, Some(len))
                }
            };
            let piece = match h {
                Hashed::New(chunk) => {
                    new_bytes += store.put(&chunk)?;
                    progress(chunk.len() as u64);
                    Piece {
                        id: chunk.id(),
                        sha1: chunk.sha1(),
                    }
                }
                Hashed::Known { id, sha1 } => {
                    let entry = store.entry(&id)?.ok_or(Error::MissingChunk(id))?;
                    progress(u64::from(entry.len));
                    Piece { id, sha1 }
                }
            };
            if let Some(len) = hole {
                zeros.insert(len, piece);
            }
            if let Some(p) = padded {
                store.chunks().put_padded(p)?;
                tail = Some(Piece {
                    id: p.id(),
                    sha1: p.sha1(),
                });
            }
            pieces.push(piece);
        }
    }
    Ok((pieces, tail, new_bytes))
}
