//! Reading an import's files: small files whole, on threads kept for the whole
//! import; large ones through the per-file piece pipeline (`hasher.rs`).
//!
//! A small file (at most [`SMALL_PIECES`] pieces and [`SMALL_BYTES`]) is one job: a
//! worker opens it, reads it with one `pread`, hashes its pieces (BLAKE3, and SHA-1
//! only for chunks the index lacks; a one-piece file's piece id is its content id,
//! hashed once) and checks it did not change. Workers run ahead of the calling
//! thread by at most [`AHEAD_BYTES`]; the calling thread takes their results in walk
//! order and stores the pieces, so the packs' order and what counts as new are the
//! same whatever the threads' timing.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::cache::{FileStat, Known, StatCache};
use super::hasher::{store_file, Holes, Piece, StoredFile};
use super::walk::Found;
use crate::chunks::chunk::{Hashed, Padded, VerifiedChunk};
use crate::chunks::index::Index;
use crate::manifest::EntryKind;
use crate::store::Store;
use crate::{ContentId, Error, Result};

/// The most pieces a file read whole by one worker has.
pub(super) const SMALL_PIECES: u64 = 4;
/// The largest file read whole by one worker.
pub(super) const SMALL_BYTES: u64 = 16 << 20;
/// From this many files in the stat cache, the torrent records are listed once.
const LIST_TORRENTS_FROM: usize = 1000;
/// How far, in file bytes, the workers may read ahead of the stores.
const AHEAD_BYTES: u64 = 64 << 20;

/// What the walk found at one place, and what became of it.
pub(super) enum Content<'c> {
    Dir,
    Symlink(Vec<u8>),
    /// A file taken from the stat cache unread.
    Reused(&'c Known),
    /// A file read, its pieces stored.
    Stored(StoredFile),
}

/// Reads every entry of the walk and stores every file's pieces, in walk order; a
/// file `reuse` knows unchanged (and whose torrent the store holds) is not read.
/// The last piece of every non-empty file but the `last_nonempty` one is also
/// hashed padded, for the directory torrent.
pub(super) fn read_all<'c>(
    store: &Store,
    found: &[Found],
    reuse: Option<&'c StatCache>,
    piece_length: u32,
    last_nonempty: Option<usize>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Content<'c>>> {
    use std::os::unix::ffi::OsStrExt;
    // Many files known: one listing of the torrents beats a lookup each.
    let listed = match reuse {
        Some(c) if c.len() > LIST_TORRENTS_FROM => Some(
            store
                .catalog()
                .torrents()?
                .into_iter()
                .collect::<std::collections::HashSet<_>>(),
        ),
        _ => None,
    };
    let mut plan = Vec::with_capacity(found.len());
    for f in found {
        let known = || {
            let k = reuse?.0.get(&f.rel)?;
            let holds = match &k.kind {
                EntryKind::File {
                    info_hash: Some(ih),
                    ..
                } => listed
                    .as_ref()
                    .map_or_else(|| store.catalog().has_torrent(ih), |l| l.contains(ih)),
                _ => true,
            };
            (holds && k.stat == FileStat::of(&f.meta)).then_some(k)
        };
        plan.push(if f.meta.is_dir() {
            Some(Content::Dir)
        } else if f.meta.file_type().is_symlink() {
            let target = std::fs::read_link(&f.disk).map_err(Error::io(&f.disk, "read link"))?;
            Some(Content::Symlink(target.as_os_str().as_bytes().to_vec()))
        } else {
            known().map(Content::Reused)
        });
    }
    let small: Vec<usize> = (0..found.len())
        .filter(|&i| plan[i].is_none() && is_small(found[i].meta.len(), piece_length))
        .collect();
    std::thread::scope(|s| {
        let mut pool = Pool::start(s, store.chunks().index(), piece_length);
        let mut next = 0;
        let mut out = Vec::with_capacity(found.len());
        for (i, slot) in plan.into_iter().enumerate() {
            while let Some(&at) = small.get(next) {
                if !pool.has_room(found[at].meta.len()) {
                    break;
                }
                pool.send(Job {
                    at,
                    path: &found[at].disk,
                    meta: &found[at].meta,
                    pad_tail: Some(at) != last_nonempty,
                });
                next += 1;
            }
            let f = &found[i];
            let content = match slot {
                Some(c) => c,
                None => {
                    let stored = if is_small(f.meta.len(), piece_length) {
                        pool.take(i).and_then(|r| store_read(store, r, progress))
                    } else {
                        let pad = Some(i) != last_nonempty;
                        store_file(store, &f.disk, &f.meta, piece_length, pad, progress)
                    };
                    Content::Stored(stored.map_err(|e| naming(e, &f.disk))?)
                }
            };
            out.push(content);
        }
        Ok(out)
    })
}

/// An error while storing `path`, naming it if it does not already.
fn naming(err: Error, path: &Path) -> Error {
    match err {
        Error::Io { path: ref p, .. } | Error::BadInput { path: ref p, .. } if p == path => err,
        err => Error::Importing {
            path: path.to_path_buf(),
            err: Box::new(err),
        },
    }
}

/// Whether a file of `size` bytes is read whole by one worker.
pub(super) fn is_small(size: u64, piece_length: u32) -> bool {
    size <= SMALL_BYTES && size.div_ceil(u64::from(piece_length)) <= SMALL_PIECES
}

/// A small file to read: the position of its result, its path, the metadata the walk
/// saw, and whether its last piece is padded (for the directory torrent).
pub(super) struct Job<'a> {
    pub at: usize,
    pub path: &'a Path,
    pub meta: &'a std::fs::Metadata,
    pub pad_tail: bool,
}

/// A small file read and hashed, not yet stored.
pub(super) struct ReadFile {
    content: ContentId,
    size: u64,
    pieces: Vec<Hashed>,
    padded: Option<Padded>,
}

/// Worker threads reading small files; results are taken in any order of `at`.
pub(super) struct Pool<'a> {
    jobs: Option<Sender<Job<'a>>>,
    results: Receiver<(usize, Result<ReadFile>)>,
    ready: HashMap<usize, Result<ReadFile>>,
    stop: Arc<AtomicBool>,
    /// Bytes sent to the workers and not yet taken back.
    ahead: u64,
}

impl<'a> Pool<'a> {
    /// Starts one worker per core in `scope`; they end when the pool is dropped.
    pub fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        index: &Index,
        piece_length: u32,
    ) -> Pool<'a>
    where
        'a: 'scope,
    {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, job_rx) = channel::<Job<'a>>();
        let (done_tx, results) = channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..threads {
            let (rx, tx, stop) = (job_rx.clone(), done_tx.clone(), stop.clone());
            let index = index.clone();
            scope.spawn(move || loop {
                let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(job) = job else { return };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let read = read_small(&index, job.path, job.meta, piece_length, job.pad_tail);
                if tx.send((job.at, read)).is_err() {
                    return;
                }
            });
        }
        Pool {
            jobs: Some(jobs),
            results,
            ready: HashMap::new(),
            stop,
            ahead: 0,
        }
    }

    /// Whether another job of `size` bytes may be sent now.
    pub fn has_room(&self, size: u64) -> bool {
        self.ahead == 0 || self.ahead + size <= AHEAD_BYTES
    }

    pub fn send(&mut self, job: Job<'a>) {
        self.ahead += job.meta.len();
        if let Some(jobs) = &self.jobs {
            // The workers outlive the pool's sender; a send fails only if all died.
            let _ = jobs.send(job);
        }
    }

    /// Waits for the file sent with `at`.
    pub fn take(&mut self, at: usize) -> Result<ReadFile> {
        loop {
            if let Some(r) = self.ready.remove(&at) {
                if let Ok(read) = &r {
                    self.ahead -= read.size.min(self.ahead);
                }
                return r;
            }
            let (i, r) = self
                .results
                .recv()
                .map_err(|_| Error::Invalid("every import worker stopped".into()))?;
            self.ready.insert(i, r);
        }
    }
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
    }
}

/// Reads and hashes one small file; refuses it if it is not what the walk saw or
/// changes while read.
fn read_small(
    index: &Index,
    path: &Path,
    expect: &std::fs::Metadata,
    piece_length: u32,
    pad_tail: bool,
) -> Result<ReadFile> {
    let changed = || Error::BadInput {
        path: path.to_path_buf(),
        reason: "file changed while being read; import again when it is quiet".into(),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(Error::io(path, "open"))?;
    let before = file.metadata().map_err(Error::io(path, "read metadata"))?;
    if !before.is_file() || before.ino() != expect.ino() || before.len() != expect.len() {
        return Err(changed());
    }
    let size = before.len();
    let pl = u64::from(piece_length);
    let count = size.div_ceil(pl);
    // Fewer blocks than bytes: maybe holes, which are not read.
    let sparse = before.blocks().saturating_mul(512) < size;
    let mut holes = Holes::new(&file, size);
    let mut buf = vec![0u8; size as usize + 1];
    let mut got = 0;
    if sparse {
        for i in 0..count {
            let at = i * pl;
            let len = (size - at).min(pl);
            if !holes.is_hole(at, len) {
                let end = (at + len) as usize;
                read_full(&file, &mut buf[at as usize..end], at, path)?;
            }
        }
        got = read_full(&file, &mut buf[size as usize..], size, path)? + size as usize;
    } else {
        while got < buf.len() {
            match file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, "read")(e)),
            }
        }
    }
    if got != size as usize {
        return Err(changed());
    }
    buf.truncate(size as usize);
    let hash = |bytes: Vec<u8>| {
        VerifiedChunk::hash_unless_known(bytes, |id| Ok(index.get(id)?.map(|e| e.sha1)))
    };
    let padded = (pad_tail && size % pl != 0)
        .then(|| Padded::hash(&buf[((count - 1) * pl) as usize..], piece_length))
        .flatten();
    let (content, pieces) = if count == 1 {
        let piece = hash(buf)?;
        (ContentId(piece.id().0), vec![piece])
    } else {
        let content = ContentId(*blake3::hash(&buf).as_bytes());
        let pieces = buf
            .chunks(pl as usize)
            .map(|p| hash(p.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        (content, pieces)
    };
    let after = file.metadata().map_err(Error::io(path, "read metadata"))?;
    if after.len() != size
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
    {
        return Err(changed());
    }
    Ok(ReadFile {
        content,
        size,
        pieces,
        padded,
    })
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &std::fs::File, buf: &mut [u8], at: u64, path: &Path) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, "read")(e)),
        }
    }
    Ok(got)
}

/// Stores the pieces of a file a worker read, in order.
pub(super) fn store_read(
    store: &Store,
    read: ReadFile,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StoredFile> {
    let mut pieces = Vec::with_capacity(read.pieces.len());
    let (mut new_bytes, mut told) = (0, 0);
    for h in read.pieces {
        let piece = match h {
            Hashed::New(chunk) => {
                new_bytes += store.put(&chunk)?;
                told += chunk.len() as u64;
                progress(chunk.len() as u64);
                Piece {
                    id: chunk.id(),
                    sha1: chunk.sha1(),
                }
            }
            Hashed::Known { id, sha1 } => Piece { id, sha1 },
        };
        pieces.push(piece);
    }
    // Pieces the store held count as consumed too.
    if read.size > told {
        progress(read.size - told);
    }
    let padded_tail = match read.padded {
        Some(p) => {
            store.chunks().put_padded(p)?;
            Some(Piece {
                id: p.id(),
                sha1: p.sha1(),
            })
        }
        None => None,
    };
    Ok(StoredFile {
        content: read.content,
        size: read.size,
        pieces,
        padded_tail,
        new_bytes,
    })
}
