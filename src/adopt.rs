//! `cas add --data`: adopt a torrent made by anyone, with its data already on disk.
//!
//! The data is read as the torrent lays it out (files in order, BEP 47 pad files as
//! zeros), piece by piece. Each piece is hashed and compared with the torrent's SHA-1:
//! a piece that matches is stored (or found stored: same BLAKE3, so nothing is
//! written), one that does not, or that a missing or short file leaves incomplete, is
//! reported and left for peers to send. A torrent whose every piece is stored becomes
//! a torrent record at once; otherwise it is a download, which `cas serve` completes.
//!
//! The data is read from where `--data` points and nowhere else: below it no
//! symlink is followed and only regular files are read (a FIFO or a device there is
//! refused with an error naming it, never waited on).
//!
//! One thread reads, the others hash; the calling thread stores in piece order.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::chunks::chunk::{Hashed, Padded, VerifiedChunk};
use crate::dirfd::{check_regular, Dir};
use crate::meta::parse::Metainfo;
use crate::{ChunkId, Error, InfoHash, Result, Store};

/// What adopting did.
#[derive(Clone, Debug, Serialize)]
pub struct AdoptReport {
    pub info_hash: InfoHash,
    pub name: String,
    pub pieces: usize,
    /// Pieces that matched the torrent and were stored now.
    pub pieces_new: usize,
    /// Pieces that matched and were already in the store.
    pub pieces_known: usize,
    /// Pieces whose data is wrong or missing, by index.
    pub bad_pieces: Vec<usize>,
    /// Files of the torrent not found (or too short) under the data path.
    pub missing_files: Vec<String>,
    /// Bytes written to packs.
    pub new_bytes: u64,
    /// Every piece is stored: the torrent is recorded and seeded as it is.
    pub complete: bool,
    pub seconds: f64,
}

/// Whether an error only says a file is not there: a missing file is reported (and
/// its pieces left for peers), not refused.
fn absent(e: &Error) -> bool {
    matches!(e, Error::Io { err, .. } if err.raw_os_error() == Some(libc::ENOENT))
}

/// Opens the file at `path` (components) below `dir`; `None` if it is not there.
fn open_in(dir: &Dir, path: &[String]) -> Result<Option<File>> {
    let Some((name, parents)) = path.split_last() else {
        return Ok(None);
    };
    let opened = dir
        .walk(parents.iter().map(OsStr::new))
        .and_then(|d| d.open_file(OsStr::new(name)));
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens `data` itself, a file the user named (so a symlink there is theirs):
/// only a regular file is taken, and the open never blocks (a FIFO).
fn open_given(data: &Path) -> Result<File> {
    let m = std::fs::metadata(data).map_err(Error::io(data, "open the data"))?;
    if !m.is_file() {
        // Said before opening: opening a device can do things.
        return Err(Error::BadInput {
            path: data.to_path_buf(),
            reason: format!("is {}, not a regular file", kind(&m)),
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(data)
        .map_err(Error::io(data, "open the data"))?;
    check_regular(&file, data)?;
    Ok(file)
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a file of an unknown type"
    }
}

/// Opens each of the torrent's files as it lays them out under `data`: `None` for a
/// pad file or a file that is not there. Below `data` nothing is followed: every
/// component is opened relative to its directory's handle with `O_NOFOLLOW`, and a
/// symlink, FIFO, socket or device where the torrent has a file or a directory is
/// refused with an error that names it.
fn open_files(meta: &Metainfo, data: &Path) -> Result<Vec<Option<File>>> {
    let meta_data = std::fs::metadata(data).map_err(Error::io(data, "open the data"))?;
    let mut single: Option<File> = None;
    let base = if meta.single_file {
        if meta_data.is_dir() {
            single = open_in(&Dir::open(data)?, std::slice::from_ref(&meta.name))?;
        } else {
            single = Some(open_given(data)?);
        }
        None
    } else {
        if !meta_data.is_dir() {
            return Err(Error::BadInput {
                path: data.to_path_buf(),
                reason: format!(
                    "torrent {:?} has several files: give its directory, not a file",
                    meta.name
                ),
            });
        }
        // The torrent's own directory, or the one holding it.
        let root = Dir::open(data)?;
        let first = meta.files.iter().find(|f| !f.pad);
        let has_first = |d: &Dir| first.is_some_and(|f| matches!(open_in(d, &f.path), Ok(Some(_))));
        if has_first(&root) {
            Some(root)
        } else {
            match root.dir(OsStr::new(&meta.name)) {
                Ok(d) if has_first(&d) => Some(d),
                Ok(_) => Some(root),
                Err(e) if absent(&e) => Some(root),
                Err(e) => return Err(e),
            }
        }
    };
    let mut files = Vec::with_capacity(meta.files.len());
    for f in &meta.files {
        files.push(match (&base, f.pad) {
            (_, true) => None,
            (None, false) => single.take(),
            (Some(dir), false) => open_in(dir, &f.path)?,
        });
    }
    Ok(files)
}

/// Reads piece after piece of the torrent's content; `None` for a piece some of whose
/// bytes could not be read.
struct PieceReader<'a> {
    meta: &'a Metainfo,
    files: Vec<Option<File>>,
}

impl PieceReader<'_> {
    fn piece(&self, i: usize) -> Option<Vec<u8>> {
        let start = i as u64 * u64::from(self.meta.piece_length);
        let len = self.meta.piece_len(i);
        let end = start + len;
        let mut buf = vec![0u8; len as usize];
        for (f, file) in self.meta.files.iter().zip(&self.files) {
            let (fs, fe) = (f.offset, f.offset + f.length);
            if fe <= start || fs >= end || f.length == 0 {
                continue;
            }
            if f.pad {
                continue; // zeros already
            }
            let from = start.max(fs);
            let to = end.min(fe);
            let dst = &mut buf[(from - start) as usize..(to - start) as usize];
            file.as_ref()?.read_exact_at(dst, from - fs).ok()?;
        }
        Some(buf)
    }
}

/// A piece that matched: the chunk that holds it and, for a piece that ends in pad
/// files, the padded lookup that finds that (shorter) chunk by the piece's SHA-1.
type Matched = (Hashed, Option<Padded>);

/// Piece `i` read from the data, hashed: `None` if it is missing or does not match
/// the torrent. A chunk stored already carries its SHA-1: it is not computed again.
/// A piece that ends in pad files (BEP 47) and is not stored as it is becomes its data
/// without the zeros: the chunk a file torrent of the same file has for its last
/// piece, so the padding is stored once for both.
fn hash(
    store: &Store,
    meta: &Metainfo,
    i: usize,
    bytes: Option<Vec<u8>>,
) -> Result<Option<Matched>> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let known = |id: &ChunkId| Ok(store.entry(id)?.map(|e| e.sha1));
    let hashed = VerifiedChunk::hash_unless_known(bytes, known)?;
    if hashed.sha1() != meta.pieces[i] {
        return Ok(None);
    }
    if let (Hashed::New(chunk), Some(data)) = (&hashed, meta.data_before_pad(i)) {
        let (data, zeros) = chunk.bytes().split_at((data as usize).min(chunk.len()));
        if zeros.iter().all(|&b| b == 0) {
            if let Some(padded) = Padded::hash(data, chunk.len() as u32) {
                let short = VerifiedChunk::hash_unless_known(data.to_vec(), known)?;
                return Ok(Some((short, Some(padded))));
            }
        }
    }
    Ok(Some((hashed, None)))
}

/// Verifies `data` against the torrent and stores every piece that matches.
/// `progress` gets the bytes checked so far.
/// `cas add FILE.torrent --data PATH`: the torrent in `torrent` (read from
/// `torrent_path`) adopted with its data. Its .torrent is kept as a download until
/// every piece is stored, then recorded as the store's; a first adoption that fails
/// leaves nothing behind. `label` names it for `cas stats`; `progress` is told the
/// bytes checked and the torrent's length. An incomplete adoption
/// stays a download, for the engine to fetch the bad pieces.
pub fn add_with_data(
    store: &Store,
    torrent: &[u8],
    torrent_path: &Path,
    data: &Path,
    label: Option<&str>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(Metainfo, AdoptReport)> {
    let meta = Metainfo::parse(torrent).map_err(|e| Error::BadInput {
        path: torrent_path.to_path_buf(),
        reason: format!("not a usable torrent: {e}"),
    })?;
    let catalog = store.catalog();
    let ih = meta.info_hash;
    let new = !catalog.has_torrent(&ih) && !catalog.is_downloading(&ih);
    if !catalog.has_torrent(&ih) {
        // The .torrent as given (trackers, url-list and all) is what gets recorded.
        catalog.put_download(&ih, torrent)?;
    }
    let total = meta.length;
    let (report, held) = match adopt(store, &meta, data, &|n| progress(n, total)) {
        Ok(r) => r,
        Err(e) => {
            if new {
                catalog.remove_download(&ih)?;
            }
            return Err(e);
        }
    };
    if report.complete && !catalog.has_torrent(&ih) {
        let pieces = held.into_iter().flatten().collect();
        crate::store::finish::record(store, &meta, pieces, None)?;
    }
    if let Some(name) = label {
        catalog.set_label(&ih, name)?;
    }
    Ok((meta, report))
}

/// Checks a torrent's data piece by piece and stores the pieces that match; returns
/// the report and the chunk of every piece now held.
pub fn adopt(
    store: &Store,
    meta: &Metainfo,
    data: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(AdoptReport, Vec<Option<ChunkId>>)> {
    let start = Instant::now();
    let opened = open_files(meta, data)?;
    let mut report = AdoptReport {
        info_hash: meta.info_hash,
        name: meta.name.clone(),
        pieces: meta.pieces.len(),
        pieces_new: 0,
        pieces_known: 0,
        bad_pieces: Vec::new(),
        missing_files: Vec::new(),
        new_bytes: 0,
        complete: false,
        seconds: 0.0,
    };
    let mut files = Vec::with_capacity(opened.len());
    for (f, file) in meta.files.iter().zip(opened) {
        let file = file.filter(|file| file.metadata().is_ok_and(|m| m.len() >= f.length));
        if file.is_none() && !f.pad {
            report.missing_files.push(f.path.join("/"));
        }
        files.push(file);
    }
    let reader = PieceReader { meta, files };
    let n = meta.pieces.len();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut held: Vec<Option<ChunkId>> = vec![None; n];
    let next = Mutex::new(0usize);
    let result: Result<()> = std::thread::scope(|s| {
        // Workers take the next piece index, read it and hash it; results come back
        // tagged with their index and are stored in order.
        let (tx, rx) = sync_channel::<(usize, Result<Option<Matched>>)>(workers * 2);
        for _ in 0..workers {
            let tx = tx.clone();
            let (reader, next) = (&reader, &next);
            s.spawn(move || loop {
                let i = {
                    let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *g;
                    *g += 1;
                    i
                };
                if i >= n {
                    return;
                }
                let r = hash(store, meta, i, reader.piece(i));
                if tx.send((i, r)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        collect(store, meta, rx, &mut held, &mut report, progress)
    });
    result?;
    store.commit()?;
    report.complete = held.iter().all(Option::is_some);
    report.seconds = start.elapsed().as_secs_f64();
    Ok((report, held))
}

/// Stores hashed pieces in piece order.
fn collect(
    store: &Store,
    meta: &Metainfo,
    rx: Receiver<(usize, Result<Option<Matched>>)>,
    held: &mut [Option<ChunkId>],
    report: &mut AdoptReport,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let mut early = std::collections::BTreeMap::new();
    let (mut want, mut done) = (0usize, 0u64);
    for (i, r) in rx {
        early.insert(i, r);
        while let Some(r) = early.remove(&want) {
            match r? {
                Some((hashed, padded)) => {
                    match hashed {
                        Hashed::Known { id, .. } => {
                            held[want] = Some(id);
                            report.pieces_known += 1;
                        }
                        Hashed::New(chunk) => {
                            report.new_bytes += store.put(&chunk)?;
                            held[want] = Some(chunk.id());
                            report.pieces_new += 1;
                        }
                    }
                    if let Some(p) = padded {
                        store.chunks().put_padded(p)?;
                    }
                }
                None => report.bad_pieces.push(want),
            }
            done += meta.piece_len(want);
            progress(done);
            want += 1;
        }
    }
    Ok(())
}
