//! Reading what the store publishes: a torrent's content, a tree's manifest, and the
//! names users give on the command line (ref, tree id, info-hash, `REF:path`).
//!
//! Every byte returned here came through [`Store::get`], so it was verified against
//! its chunk id; whole files are checked again against their content hash.

use std::io::Write;

use crate::catalog::{TorrentKind, TorrentRecord};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::store::Store;
use crate::{ContentId, Error, InfoHash, Result, TreeId};

/// What a command-line name refers to.
#[derive(Clone, Debug)]
pub enum Target {
    /// A tree, possibly through a ref (then `via_ref` holds its name).
    Tree { id: TreeId, via_ref: Option<String> },
    /// One file of a tree (`REF:path` or `TREE:path`).
    File { tree: TreeId, entry: Box<Entry> },
    /// A torrent by info-hash.
    Torrent(InfoHash),
}

/// Resolves a name: a 40-hex info-hash, a 64-hex tree id, `NAME:path`, or a ref.
pub fn resolve(store: &Store, spec: &str) -> Result<Target> {
    if let Some((tree_spec, path)) = spec.split_once(':') {
        let Target::Tree { id, .. } = resolve(store, tree_spec)? else {
            return Err(Error::NotFound(format!(
                "{tree_spec:?} is not a tree or ref"
            )));
        };
        let manifest = load_manifest(store, &id)?;
        let path = path.trim_matches('/');
        let entry = manifest
            .find(path.as_bytes())
            .ok_or_else(|| Error::NotFound(format!("no {path:?} in tree {tree_spec}")))?;
        return Ok(Target::File {
            tree: id,
            entry: Box::new(entry.clone()),
        });
    }
    if spec.len() == 40 {
        if let Ok(ih) = spec.parse::<InfoHash>() {
            if store.catalog().has_torrent(&ih) {
                return Ok(Target::Torrent(ih));
            }
        }
    }
    if spec.len() == 64 {
        if let Ok(id) = spec.parse::<TreeId>() {
            if store.catalog().tree(&id)?.is_some() {
                return Ok(Target::Tree { id, via_ref: None });
            }
        }
    }
    if let Some(id) = store.catalog().get_ref(spec)? {
        return Ok(Target::Tree {
            id,
            via_ref: Some(spec.to_string()),
        });
    }
    Err(Error::NotFound(format!(
        "{spec:?} is not a ref, tree id or info-hash in store {}; `cas ls` lists the refs",
        store.root().display()
    )))
}

/// A torrent record that must exist.
pub fn torrent(store: &Store, ih: &InfoHash) -> Result<TorrentRecord> {
    store
        .catalog()
        .torrent(ih)?
        .ok_or_else(|| Error::NotFound(format!("torrent {ih} is not in the store")))
}

/// Where content goes: bytes, and runs of zeros that a sink may write as holes.
pub trait Sink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    fn zeros(&mut self, len: u64) -> std::io::Result<()>;
}

/// Any writer is a sink that writes zeros as bytes.
pub struct WriteSink<W>(pub W);

impl<W: Write> Sink for WriteSink<W> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }
    fn zeros(&mut self, mut len: u64) -> std::io::Result<()> {
        let buf = [0u8; 64 << 10];
        while len > 0 {
            let n = len.min(buf.len() as u64) as usize;
            self.0.write_all(&buf[..n])?;
            len -= n as u64;
        }
        Ok(())
    }
}

/// Sends a torrent's content (pad files included) to `out`; all-zero pieces go as
/// [`Sink::zeros`] without being read.
pub fn write_content(store: &Store, record: &TorrentRecord, out: &mut dyn Sink) -> Result<u64> {
    let mut left = record.length;
    for id in &record.pieces {
        let take = left.min(u64::from(record.piece_length));
        let entry = store.entry(id)?.ok_or(Error::MissingChunk(*id))?;
        let sent = if entry.stored == 0 {
            out.zeros(take)
        } else {
            let chunk = store.read_at(*id, &entry)?;
            let bytes = chunk.bytes();
            out.data(&bytes[..(take as usize).min(bytes.len())])
        };
        sent.map_err(Error::io("<output>", "write"))?;
        left -= take;
    }
    Ok(record.length - left)
}

/// Reads a whole torrent's content into memory (small things: manifests).
pub fn content_bytes(store: &Store, record: &TorrentRecord) -> Result<Vec<u8>> {
    let mut out = WriteSink(Vec::with_capacity(record.length as usize));
    write_content(store, record, &mut out)?;
    Ok(out.0)
}

/// Loads and validates the manifest of a tree.
pub fn load_manifest(store: &Store, tree: &TreeId) -> Result<Manifest> {
    let record = store
        .catalog()
        .tree(tree)?
        .ok_or_else(|| Error::NotFound(format!("tree {tree} is not in the store")))?;
    let torrent = torrent(store, &record.manifest)?;
    let bytes = content_bytes(store, &torrent)?;
    let where_ = || store.root().join("trees").join(tree.to_hex());
    if Manifest::id_of(&bytes) != *tree {
        return Err(Error::Corrupt {
            path: where_(),
            reason: "manifest bytes do not hash to the tree id".into(),
        });
    }
    Manifest::decode(&bytes).map_err(|e| Error::Corrupt {
        path: where_(),
        reason: e.to_string(),
    })
}

/// The torrent record of a file entry (`None` for an empty file).
pub fn file_torrent(store: &Store, entry: &Entry) -> Result<Option<TorrentRecord>> {
    match &entry.kind {
        EntryKind::File {
            info_hash: Some(ih),
            ..
        } => Ok(Some(torrent(store, ih)?)),
        EntryKind::File { .. } => Ok(None),
        _ => Err(Error::Invalid(format!(
            "{} is not a regular file",
            entry.path_lossy()
        ))),
    }
}

/// Sends a file entry's content to `out`, and checks it against the content hash.
pub fn write_file(store: &Store, entry: &Entry, out: &mut dyn Sink) -> Result<()> {
    let EntryKind::File { content, .. } = &entry.kind else {
        return Err(Error::Invalid(format!(
            "{} is not a regular file",
            entry.path_lossy()
        )));
    };
    let Some(record) = file_torrent(store, entry)? else {
        return Ok(());
    };
    if record.kind != (TorrentKind::File { content: *content }) {
        return Err(Error::Corrupt {
            path: store.root().join("torrents"),
            reason: format!("torrent of {} carries other content", entry.path_lossy()),
        });
    }
    let mut hashing = HashingSink {
        inner: out,
        hasher: blake3::Hasher::new(),
    };
    write_content(store, &record, &mut hashing)?;
    if ContentId(*hashing.hasher.finalize().as_bytes()) != *content {
        return Err(Error::Corrupt {
            path: store.root().join("torrents"),
            reason: format!(
                "content of {} does not hash to {content}",
                entry.path_lossy()
            ),
        });
    }
    Ok(())
}

struct HashingSink<'a> {
    inner: &'a mut dyn Sink,
    hasher: blake3::Hasher,
}

impl Sink for HashingSink<'_> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.inner.data(bytes)
    }
    fn zeros(&mut self, mut len: u64) -> std::io::Result<()> {
        let zeros = [0u8; 64 << 10];
        let total = len;
        while len > 0 {
            let n = len.min(zeros.len() as u64) as usize;
            self.hasher.update(&zeros[..n]);
            len -= n as u64;
        }
        self.inner.zeros(total)
    }
}
