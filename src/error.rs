//! The library's error type. Every variant that concerns a file names it.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{}: {what}: {err}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        err: io::Error,
    },

    /// Another process holds the store.
    #[error("store {} is in use by {holder}; stop it or point --store elsewhere", path.display())]
    StoreBusy { path: PathBuf, holder: String },

    /// A directory that is not a cas store, or one in a format this build does not know.
    #[error("{}: {reason}", path.display())]
    NotAStore { path: PathBuf, reason: String },

    /// The index (sled) failed.
    #[error("index {}: {err}; {}", path.display(), index_fix(err))]
    Index { path: PathBuf, err: sled::Error },

    /// A file system without the room an operation needs.
    #[error("{what} needs {needed} bytes free on {} and {available} are; free space there and run it again", path.display())]
    NoSpace {
        path: PathBuf,
        what: String,
        needed: u64,
        available: u64,
    },

    /// Input that cas refuses to store, with the file and the reason.
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },

    /// Bytes on disk that do not decode or do not match their hash.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// Storing one input file failed for a reason outside the file (a full disk).
    #[error("importing {}: {err}", path.display())]
    Importing { path: PathBuf, err: Box<Error> },

    /// A chunk that the store does not hold.
    #[error("chunk {0} is not in the store")]
    MissingChunk(crate::ChunkId),

    /// A name given on the command line that resolves to nothing.
    #[error("{0}")]
    NotFound(String),

    /// A malformed hex identifier.
    #[error("{input:?} is not a {what}")]
    BadId { what: &'static str, input: String },

    /// An argument out of its range.
    #[error("{0}")]
    Invalid(String),

    /// A name (of a ref, a channel) that breaks its rule.
    #[error("{name:?} is not a valid {what} ({rule})")]
    BadName {
        what: &'static str,
        name: String,
        rule: &'static str,
    },

    /// A piece length no torrent cas makes may have.
    #[error("piece length {0} is not a power of two from 16 KiB to 64 MiB")]
    PieceLength(u64),

    /// An import asked for another piece length than the store's.
    #[error("store {} uses {store_len}-byte pieces, not {asked}: one store has one piece length, so that pieces line up across files", store.display())]
    PieceLengthMismatch {
        store: PathBuf,
        store_len: u32,
        asked: u32,
    },

    /// A tree entry used as a file that is not one.
    #[error("{0} is not a regular file")]
    NotAFile(String),

    /// `cas rm` of a torrent that only a tree keeps.
    #[error(
        "torrent {0} is not kept for its own sake: it belongs to a tree (remove the tree's ref)"
    )]
    NotKept(crate::InfoHash),

    /// A channel this store neither made nor joined.
    #[error("no channel named {0:?} here: make one (`cas channel new {0}`) or join one (`cas channel join {0} caspub-...`)")]
    NoChannel(String),

    /// gc asked to run while liveness is not fully known.
    #[error(
        "the store has broken references; run `cas fsck` (and `cas fsck --repair`) before `cas gc`"
    )]
    BrokenReferences,

    /// A serialised record that does not decode.
    #[error("{what}: {err}")]
    Decode { what: String, err: postcard::Error },
}

/// What to do about an index error: make room if the disk is full, else rebuild.
fn index_fix(err: &sled::Error) -> &'static str {
    match err {
        sled::Error::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            "sled writes to its index even to open it: free space on that file system (then `cas gc` frees more)"
        }
        _ => "`cas index rebuild` recreates it from the packs",
    }
}

impl Error {
    /// Wraps an `io::Error` with the path it concerns and what was being done.
    pub fn io(path: impl Into<PathBuf>, what: &'static str) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |err| Error::Io { path, what, err }
    }

    /// Wraps a sled error with the index path.
    pub fn index(path: impl Into<PathBuf>) -> impl FnOnce(sled::Error) -> Error {
        let path = path.into();
        move |err| Error::Index { path, err }
    }
}
