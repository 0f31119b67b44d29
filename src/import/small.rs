//! A small file read whole by one worker of the import's pool (`pool.rs`): one
//! `pread`, its pieces hashed (a one-piece file's piece BLAKE3 is its content id),
//! then stored in walk order by the calling thread.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::hasher::{Holes, Piece, StoredFile};
use crate::chunks::chunk::{Hashed, Padded, VerifiedChunk};
use crate::chunks::index::Index;
use crate::store::Store;
use crate::{ContentId, Error, Result};

/// A small file read and hashed, not yet stored.
pub(super) struct ReadFile {
    content: ContentId,
    pub(super) size: u64,
    pieces: Vec<Hashed>,
    padded: Option<Padded>,
}

/// Reads and hashes one small file; refuses it if it is not what the walk saw or
/// changes while read.
pub(super) fn read_small(
    index: &Index,
    path: &Path,
    expect: &std::fs::Metadata,
    piece_length: u32,
    pad_tail: bool,
) -> Result<ReadFile> {
    let changed = || super::hasher::changed(path);
    let (file, before) = super::hasher::open_as_seen(path, expect)?;
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
    if !super::hasher::unchanged(&before, &after) {
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
