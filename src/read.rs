//! Reading what the store publishes: a torrent's content, a tree's manifest, and the
//! names users give on the command line (ref, tree id, info-hash, `REF:path`).
//!
//! Every byte returned here came through [`Store::get`], so it was verified against
//! its chunk id; whole files are checked again against their content hash.

use crate::catalog::{TorrentKind, TorrentRecord};
use crate::manifest::{Entry, EntryKind};
pub use crate::store::content::{
    content_bytes, load_manifest, torrent, write_content, Sink, WriteSink,
};
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

/// The torrent a name stands for: an info-hash's; a tree's directory torrent (or its
/// manifest's, with `manifest`); a file's (`REF:path`).
pub fn torrent_for(store: &Store, spec: &str, manifest: bool) -> Result<(InfoHash, TorrentRecord)> {
    let ih = match resolve(store, spec)? {
        Target::Torrent(ih) => ih,
        Target::Tree { id, .. } => {
            let rec = store
                .catalog()
                .tree(&id)?
                .ok_or_else(|| Error::NotFound(format!("tree {id} is not in the store")))?;
            match (manifest, rec.directory) {
                (false, Some(d)) => d,
                (false, None) => {
                    return Err(Error::NotFound(format!(
                        "tree {id} has no file content, so no directory torrent; --manifest gives its manifest torrent"
                    )))
                }
                (true, _) => rec.manifest,
            }
        }
        Target::File { entry, .. } => match entry.kind {
            EntryKind::File {
                info_hash: Some(ih),
                ..
            } => ih,
            EntryKind::File { .. } => {
                return Err(Error::NotFound(format!(
                    "{spec} is an empty file: it has no torrent"
                )))
            }
            _ => return Err(Error::NotAFile(spec.to_string())),
        },
    };
    Ok((ih, torrent(store, &ih)?))
}

/// The magnet link of a stored torrent, with every tracker its .torrent names.
pub fn magnet(record: &TorrentRecord) -> Result<String> {
    let meta = crate::meta::parse::Metainfo::parse(&record.metainfo)
        .map_err(|e| Error::Invalid(format!("a stored torrent does not parse: {e}")))?;
    Ok(meta.magnet())
}

/// The torrent record of a file entry (`None` for an empty file).
pub fn file_torrent(store: &Store, entry: &Entry) -> Result<Option<TorrentRecord>> {
    match &entry.kind {
        EntryKind::File {
            info_hash: Some(ih),
            ..
        } => Ok(Some(torrent(store, ih)?)),
        EntryKind::File { .. } => Ok(None),
        _ => Err(Error::NotAFile(entry.path_lossy())),
    }
}

/// Sends a file entry's content to `out`, and checks it against the content hash.
pub fn write_file(store: &Store, entry: &Entry, out: &mut dyn Sink) -> Result<()> {
    let EntryKind::File { content, .. } = &entry.kind else {
        return Err(Error::NotAFile(entry.path_lossy()));
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
