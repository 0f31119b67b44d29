//! Reading an import's files: small files whole, on threads kept for the whole
//! import; large ones through the per-file piece pipeline (`hasher.rs`).
//!
//! A small file (at most [`SMALL_PIECES`] pieces and [`SMALL_BYTES`]) is one job: a
//! worker opens it, reads it with one `pread`, hashes its pieces (BLAKE3, and SHA-1
//! only for chunks the index lacks; a one-piece file's piece id is its content id,
//! hashed once) and checks it did not change (`small.rs`). Workers run ahead of the calling
//! thread by at most [`AHEAD_BYTES`]; the calling thread takes their results in walk
//! order and stores the pieces, so the packs' order and what counts as new are the
//! same whatever the threads' timing.
//!
//! What a small file costs is mostly its padded tail: the directory torrent lists the
//! SHA-1 of its last piece followed by zeros up to the piece length, so a 4 KiB file
//! in 1 MiB pieces costs a whole MiB of SHA-1 (nothing shortens SHA-1 over zeros).
//! That is most of the CPU time of an import of many small files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::cache::{FileStat, Known, StatCache};
use super::hasher::{store_file, StoredFile};
use super::small::{read_small, store_read, ReadFile};
use super::walk::Found;
use crate::chunks::index::Index;
use crate::manifest::EntryKind;
use crate::store::Store;
use crate::{Error, Result};

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
