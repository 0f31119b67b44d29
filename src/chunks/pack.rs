//! Pack files: append-only files of self-describing chunk records.
//!
//! Layout (see docs/on-disk-format.md): a 16-byte file header, then records, each a
//! 76-byte header (magic, BLAKE3, SHA-1, lengths, flags, CRC-32 of the header) and the
//! chunk's bytes up to its last non-zero byte; the rest of the chunk is zeros and is
//! not written. Because every record names its own digests, the index can be rebuilt
//! from the packs alone, and a torn record at the end of a pack is recognisable.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::Digest;

use super::chunk::{Collision, Digests, VerifiedChunk};
use crate::{ChunkId, Error, PieceHash, Result};

/// First bytes of every pack file.
pub const PACK_MAGIC: &[u8; 8] = b"CASPACK\0";
/// Pack format version written by this build.
pub const PACK_VERSION: u32 = 1;
/// Size of the pack file header.
pub const PACK_HEADER_LEN: u64 = 16;
/// First bytes of every record.
pub const RECORD_MAGIC: &[u8; 8] = b"CASCHUNK";
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 76;
/// The largest chunk a record may hold (64 MiB, the largest piece length accepted).
pub const MAX_CHUNK_LEN: u32 = 64 << 20;
/// A pack is closed and a new one started once it is this large.
pub const PACK_TARGET_LEN: u64 = 1 << 30;

const FLAG_COLLISION_DETECTED: u8 = 1;
const FLAG_COLLISION_CHECKED: u8 = 2;

/// The decoded header of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub digests: Digests,
    /// Logical length of the chunk.
    pub len: u32,
    /// Bytes present in the pack; `len - stored` trailing zeros are implied.
    pub stored: u32,
}

impl RecordHeader {
    pub(crate) fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..8].copy_from_slice(RECORD_MAGIC);
        h[8..40].copy_from_slice(&self.digests.id.0);
        h[40..60].copy_from_slice(&self.digests.sha1.0);
        h[60..64].copy_from_slice(&self.len.to_le_bytes());
        h[64..68].copy_from_slice(&self.stored.to_le_bytes());
        h[68] = match self.digests.collision {
            Collision::Unchecked => 0,
            Collision::Clean => FLAG_COLLISION_CHECKED,
            Collision::Detected => FLAG_COLLISION_CHECKED | FLAG_COLLISION_DETECTED,
        };
        let crc = crc32fast::hash(&h[..72]);
        h[72..76].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes a header, or says why the bytes are not one.
    pub fn decode(h: &[u8; RECORD_HEADER_LEN]) -> std::result::Result<Self, &'static str> {
        if &h[0..8] != RECORD_MAGIC {
            return Err("no record magic");
        }
        let crc = u32::from_le_bytes([h[72], h[73], h[74], h[75]]);
        if crc32fast::hash(&h[..72]) != crc {
            return Err("record header checksum mismatch");
        }
        let len = u32::from_le_bytes([h[60], h[61], h[62], h[63]]);
        let stored = u32::from_le_bytes([h[64], h[65], h[66], h[67]]);
        let flags = h[68];
        let known = FLAG_COLLISION_CHECKED | FLAG_COLLISION_DETECTED;
        if stored > len
            || h[69..72] != [0, 0, 0]
            || len > MAX_CHUNK_LEN
            || flags & !known != 0
            || flags == FLAG_COLLISION_DETECTED
        {
            return Err("record header out of range");
        }
        Ok(RecordHeader {
            digests: Digests {
                id: ChunkId::from_slice(&h[8..40]).ok_or("bad id")?,
                sha1: PieceHash::from_slice(&h[40..60]).ok_or("bad sha1")?,
                collision: match flags {
                    0 => Collision::Unchecked,
                    FLAG_COLLISION_CHECKED => Collision::Clean,
                    _ => Collision::Detected,
                },
            },
            len,
            stored,
        })
    }

    /// Bytes the whole record takes in the pack.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.stored)
    }
}

/// Where a record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
}

/// File name of pack number `n`.
pub fn pack_file_name(n: u32) -> String {
    format!("pack-{n:08}")
}

/// Parses a pack file name back to its number.
pub fn parse_pack_file_name(name: &str) -> Option<u32> {
    let n = name.strip_prefix("pack-")?;
    (n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Length of `bytes` without its trailing zeros.
fn trimmed_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Appends records to one pack file. Bytes are durable only after [`PackWriter::sync`].
pub struct PackWriter {
    pub number: u32,
    path: PathBuf,
    file: File,
    len: u64,
    /// Offset up to which write-back has been started.
    flushing_from: u64,
}

/// Write-back is started every this many appended bytes, so that the sync at commit
/// finds little left to write (the kernel writes while cas hashes, as it does for
/// `dd conv=fsync`).
const WRITEBACK_EVERY: u64 = 8 << 20;

impl PackWriter {
    /// Creates pack `number` in `dir`, which must not exist yet.
    pub fn create(dir: &Path, number: u32) -> Result<Self> {
        // A pack appears whole or not at all: its header is written and synced under a
        // temporary name, then linked into place (failing if the name is taken).
        let path = dir.join(pack_file_name(number));
        let tmp = dir.join(format!("{}.new", pack_file_name(number)));
        let _ = std::fs::remove_file(&tmp); // left by a crash: never a pack
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(Error::io(&tmp, "create pack"))?;
        let mut header = [0u8; PACK_HEADER_LEN as usize];
        header[..8].copy_from_slice(PACK_MAGIC);
        header[8..12].copy_from_slice(&PACK_VERSION.to_le_bytes());
        file.write_all(&header)
            .map_err(Error::io(&tmp, "write pack header"))?;
        file.sync_all()
            .map_err(Error::io(&tmp, "sync pack header"))?;
        super::synced(super::Synced::File(&tmp));
        std::fs::hard_link(&tmp, &path).map_err(Error::io(&path, "create pack"))?;
        std::fs::remove_file(&tmp).map_err(Error::io(&tmp, "remove"))?;
        super::sync_dir(dir)?;
        Ok(PackWriter {
            number,
            path,
            file,
            len: PACK_HEADER_LEN,
            flushing_from: 0,
        })
    }

    /// Reopens pack `number` for appending at `len`, its committed length.
    pub fn reopen(dir: &Path, number: u32, len: u64) -> Result<Self> {
        let path = dir.join(pack_file_name(number));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path, "open pack"))?;
        file.seek(SeekFrom::Start(len))
            .map_err(Error::io(&path, "seek pack"))?;
        Ok(PackWriter {
            number,
            path,
            file,
            len,
            flushing_from: len,
        })
    }

    /// Current length of the pack.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= PACK_HEADER_LEN
    }

    /// Appends one chunk; returns where it went and its header.
    pub fn append(&mut self, chunk: &VerifiedChunk) -> Result<(Location, RecordHeader)> {
        let bytes = chunk.bytes();
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|&l| l <= MAX_CHUNK_LEN)
            .ok_or_else(|| {
                Error::Invalid(format!("chunk of {} bytes is too large", bytes.len()))
            })?;
        let stored = trimmed_len(bytes);
        let header = RecordHeader {
            digests: chunk.digests(),
            len,
            stored: stored as u32,
        };
        let at = Location {
            pack: self.number,
            offset: self.len,
        };
        let write = |file: &mut File| -> io::Result<()> {
            let head = header.encode();
            let mut bufs = [io::IoSlice::new(&head), io::IoSlice::new(&bytes[..stored])];
            let mut slices: &mut [io::IoSlice] = &mut bufs;
            while !slices.is_empty() {
                let n = file.write_vectored(slices)?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                io::IoSlice::advance_slices(&mut slices, n);
            }
            Ok(())
        };
        if let Err(e) = write(&mut self.file) {
            // Leave the file at its last good length so a later append starts clean.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(Error::io(&self.path, "append to pack")(e));
        }
        self.len += header.record_len();
        if self.len - self.flushing_from >= WRITEBACK_EVERY {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor and an in-range byte range. This only
            // starts write-back; durability still comes from `sync`.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushing_from as libc::off64_t,
                    (self.len - self.flushing_from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushing_from = self.len;
        }
        Ok((at, header))
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(Error::io(&self.path, "sync pack"))?;
        super::synced(super::Synced::File(&self.path));
        Ok(())
    }
}

/// Reads the record at `offset` of an open pack and verifies it against `expected`.
pub fn read_record(
    file: &File,
    path: &Path,
    offset: u64,
    expected: Option<Digests>,
) -> Result<VerifiedChunk> {
    let mut head = [0u8; RECORD_HEADER_LEN];
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    file.read_exact_at(&mut head, offset)
        .map_err(|e| corrupt(format!("record at offset {offset}: {e}")))?;
    let header = RecordHeader::decode(&head)
        .map_err(|e| corrupt(format!("record at offset {offset}: {e}")))?;
    if let Some(want) = expected {
        if header.digests.id != want.id || header.digests.sha1 != want.sha1 {
            return Err(corrupt(format!(
                "record at offset {offset} holds chunk {}, not {}",
                header.digests.id, want.id
            )));
        }
    }
    let mut bytes = vec![0u8; header.len as usize];
    file.read_exact_at(
        &mut bytes[..header.stored as usize],
        offset + RECORD_HEADER_LEN as u64,
    )
    .map_err(|e| corrupt(format!("record at offset {offset}: {e}")))?;
    VerifiedChunk::verify(bytes, header.digests).map_err(|_| {
        corrupt(format!(
            "chunk {} at offset {offset} does not match its BLAKE3",
            header.digests.id
        ))
    })
}

/// One step of a sequential scan of a pack.
#[derive(Debug)]
pub enum ScanItem {
    /// A record whose header decodes; `intact` says whether its bytes hash to its id
    /// (and SHA-1).
    Record {
        offset: u64,
        header: RecordHeader,
        intact: bool,
    },
    /// Bytes that are not a record (damage or a torn write), from `offset`, `len` long.
    Garbage { offset: u64, len: u64 },
}

/// Scans a whole pack sequentially, re-hashing every record's bytes. Damaged or torn
/// byte ranges are reported as garbage; the scan resynchronises on the next record
/// magic. Reads one record at a time, so memory stays at one chunk.
pub fn scan(path: &Path) -> Result<Vec<ScanItem>> {
    let file = File::open(path).map_err(Error::io(path, "open pack"))?;
    let size = file.metadata().map_err(Error::io(path, "stat pack"))?.len();
    let mut head = [0u8; PACK_HEADER_LEN as usize];
    if size < PACK_HEADER_LEN
        || file.read_exact_at(&mut head, 0).is_err()
        || &head[..8] != PACK_MAGIC
    {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: "not a cas pack (bad header)".into(),
        });
    }
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(Error::io(path, "read pack"))
    };
    let mut items = Vec::new();
    let mut pos = PACK_HEADER_LEN;
    let mut garbage_from: Option<u64> = None;
    let mut bytes = Vec::new();
    while pos < size {
        let mut h = [0u8; RECORD_HEADER_LEN];
        let header = if pos + RECORD_HEADER_LEN as u64 <= size {
            read(&mut h, pos)?;
            RecordHeader::decode(&h)
                .ok()
                .filter(|hd| pos + hd.record_len() <= size)
        } else {
            None
        };
        let Some(header) = header else {
            garbage_from.get_or_insert(pos);
            pos = next_magic(&file, path, pos + 1, size)?;
            continue;
        };
        if let Some(from) = garbage_from.take() {
            items.push(ScanItem::Garbage {
                offset: from,
                len: pos - from,
            });
        }
        bytes.clear();
        bytes.resize(header.stored as usize, 0);
        read(&mut bytes, pos + RECORD_HEADER_LEN as u64)?;
        bytes.resize(header.len as usize, 0);
        let intact = ChunkId::of(&bytes) == header.digests.id
            && <[u8; 20]>::from(sha1::Sha1::digest(&bytes)) == header.digests.sha1.0;
        items.push(ScanItem::Record {
            offset: pos,
            header,
            intact,
        });
        pos += header.record_len();
    }
    if let Some(from) = garbage_from {
        items.push(ScanItem::Garbage {
            offset: from,
            len: size - from,
        });
    }
    Ok(items)
}

/// Offset of the next record magic at or after `from`, or `size` if there is none.
fn next_magic(file: &File, path: &Path, mut from: u64, size: u64) -> Result<u64> {
    const WINDOW: u64 = 1 << 20;
    let mut buf = vec![0u8; WINDOW as usize];
    while from < size {
        let len = WINDOW.min(size - from) as usize;
        file.read_exact_at(&mut buf[..len], from)
            .map_err(Error::io(path, "read pack"))?;
        if let Some(i) = find(&buf[..len], RECORD_MAGIC) {
            return Ok(from + i as u64);
        }
        if len < RECORD_MAGIC.len() {
            break;
        }
        // Overlap windows so a magic split across two windows is found.
        from += (len - RECORD_MAGIC.len() + 1) as u64;
    }
    Ok(size)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_resynchronises_after_damage_and_trims_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(dir.path(), 1).unwrap();
        let a = VerifiedChunk::hash(vec![7u8; 1000]);
        let mut tail_zeros = vec![9u8; 10];
        tail_zeros.resize(5000, 0);
        let b = VerifiedChunk::hash(tail_zeros);
        let (at_a, _) = w.append(&a).unwrap();
        let (at_b, hb) = w.append(&b).unwrap();
        assert_eq!(hb.stored, 10, "trailing zeros are not written");
        w.sync().unwrap();
        let path = dir.path().join(pack_file_name(1));
        // Damage the first record's header: it becomes garbage, the second is found.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"X", at_a.offset + 3).unwrap();
        let items = scan(&path).unwrap();
        assert!(
            matches!(items[0], ScanItem::Garbage { offset, len } if offset == at_a.offset && len == at_b.offset - at_a.offset)
        );
        assert!(
            matches!(items[1], ScanItem::Record { offset, intact: true, .. } if offset == at_b.offset)
        );
        let file = File::open(&path).unwrap();
        let back = read_record(&file, &path, at_b.offset, Some(b.digests())).unwrap();
        assert_eq!(back.bytes(), b.bytes());
        assert!(read_record(&file, &path, at_a.offset, Some(a.digests())).is_err());
    }
}
