//! The catalog: what the store publishes. Torrents, trees and refs, one small file
//! each, written atomically (temporary file, fsync, rename), so that a crash leaves
//! either the old or the new record, never half of one.
//!
//! - `torrents/<info-hash hex>`: a [`TorrentRecord`] (the .torrent bytes and the
//!   BLAKE3 id of every piece);
//! - `trees/<tree id hex>`: a [`TreeRecord`] (the torrents that carry a tree);
//! - `refs/<name>`: the tree id a ref points at, as hex and a newline;
//! - `downloads/<info-hash hex>`: the .torrent of a download not yet complete;
//! - `pins/<info-hash hex>`: an empty file for each torrent kept for its own sake
//!   (fetched or adopted by info-hash, not through a tree); `cas rm` unpins;
//! - `damaged/<refs|trees|torrents>/<name>-<unix seconds>`: records that did not
//!   decode, moved aside by `cas fsck --repair` ([`Catalog::set_aside_ref`] and the
//!   like); nothing reads them.
//!
//! Records written one by one cost two fsyncs each; an import writes its torrent
//! records through a [`CatalogBatch`] (`batch.rs`), durable at one sync point.

pub(crate) mod batch;
pub use batch::CatalogBatch;

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::chunks::{sync_dir, write_atomic};
use crate::{ChunkId, ContentId, Error, InfoHash, Result, TreeId};

pub(crate) const TORRENT_MAGIC: &[u8; 8] = b"CASTORR\x01";
pub(crate) const TREE_MAGIC: &[u8; 8] = b"CASTREC\x01";

/// What a torrent carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TorrentKind {
    /// One file, named by its content hash.
    File { content: ContentId },
    /// A tree's manifest, named by the tree id.
    Manifest { tree: TreeId },
    /// A whole imported directory, with BEP 47 pad files.
    Directory { tree: TreeId },
    /// A torrent made elsewhere (downloaded or adopted), as its .torrent says.
    Foreign,
}

/// A torrent the store seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TorrentRecord {
    pub kind: TorrentKind,
    /// Total length of the torrent's content, pad files included.
    pub length: u64,
    pub piece_length: u32,
    /// BLAKE3 id of each piece, in order; `pieces.len()` is the piece count.
    pub pieces: Vec<ChunkId>,
    /// The complete .torrent file (bencoded metainfo).
    pub metainfo: Vec<u8>,
}

/// The torrents that carry one tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRecord {
    /// The torrent of the manifest bytes.
    pub manifest: InfoHash,
    /// The multi-file torrent of the whole directory, if it has any file content.
    pub directory: Option<InfoHash>,
    /// Name the directory had when imported (the directory torrent's name).
    pub name: String,
}

/// What a lenient listing returns: the records that read, and (by name) the errors
/// of those that did not decode.
pub type Unreadable<T, N> = (Vec<T>, Vec<(N, Error)>);

/// Access to the catalog directories of a store.
pub struct Catalog {
    root: PathBuf,
}

/// Checks a ref name: 1-255 bytes, no `/`, no NUL, not starting with `.`.
pub fn check_ref_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('.')
        || name.contains(['/', '\0', ':'])
        || name.chars().any(char::is_control)
    {
        return Err(Error::BadName {
            what: "ref name",
            name: name.to_string(),
            rule: "1-255 bytes, no '/', ':' or control characters, not starting with '.'",
        });
    }
    Ok(())
}

pub(crate) fn encode<T: Serialize>(magic: &[u8; 8], value: &T) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend(postcard::to_stdvec(value).expect("record serialises"));
    out
}

pub(crate) fn decode<T: DeserializeOwned>(magic: &[u8; 8], bytes: &[u8], path: &Path) -> Result<T> {
    let body = bytes
        .strip_prefix(magic.as_slice())
        .ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            reason: "unknown record magic or version".into(),
        })?;
    let bad = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(bad(format!("{} bytes after the record", rest.len()))),
        Err(e) => Err(bad(format!("record does not decode: {e}"))),
    }
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read")(e)),
    }
}

fn remove(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(path.parent().expect("catalog paths have a parent"))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, "remove")(e)),
    }
}

/// Names of the entries of `dir` that parse with `parse`; temporary files are skipped.
fn list<T>(dir: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir, "list"))? {
        let entry = entry.map_err(Error::io(dir, "list"))?;
        if let Some(v) = entry.file_name().to_str().and_then(&parse) {
            out.push(v);
        }
    }
    Ok(out)
}

impl Catalog {
    pub fn open(root: &Path) -> Result<Self> {
        for d in ["torrents", "trees", "refs", "downloads", "pins"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(Error::io(&p, "create directory"))?;
        }
        Ok(Catalog {
            root: root.to_path_buf(),
        })
    }

    fn torrent_path(&self, ih: &InfoHash) -> PathBuf {
        self.root.join("torrents").join(ih.to_hex())
    }

    fn tree_path(&self, id: &TreeId) -> PathBuf {
        self.root.join("trees").join(id.to_hex())
    }

    fn ref_path(&self, name: &str) -> PathBuf {
        self.root.join("refs").join(name)
    }

    pub fn put_torrent(&self, ih: &InfoHash, record: &TorrentRecord) -> Result<()> {
        write_atomic(&self.torrent_path(ih), &encode(TORRENT_MAGIC, record))
    }

    pub fn torrent(&self, ih: &InfoHash) -> Result<Option<TorrentRecord>> {
        let path = self.torrent_path(ih);
        read_opt(&path)?
            .map(|b| decode(TORRENT_MAGIC, &b, &path))
            .transpose()
    }

    pub fn has_torrent(&self, ih: &InfoHash) -> bool {
        self.torrent_path(ih).exists()
    }

    pub fn torrents(&self) -> Result<Vec<InfoHash>> {
        list(&self.root.join("torrents"), |n| n.parse().ok())
    }

    pub fn remove_torrent(&self, ih: &InfoHash) -> Result<bool> {
        remove(&self.torrent_path(ih))
    }

    fn download_path(&self, ih: &InfoHash) -> PathBuf {
        self.root.join("downloads").join(ih.to_hex())
    }

    /// Records a torrent being downloaded (its .torrent bytes), so that it resumes.
    pub fn put_download(&self, ih: &InfoHash, torrent: &[u8]) -> Result<()> {
        write_atomic(&self.download_path(ih), torrent)
    }

    /// The .torrent bytes of a download not yet complete.
    pub fn download(&self, ih: &InfoHash) -> Result<Option<Vec<u8>>> {
        read_opt(&self.download_path(ih))
    }

    pub fn is_downloading(&self, ih: &InfoHash) -> bool {
        self.download_path(ih).exists()
    }

    pub fn downloads(&self) -> Result<Vec<InfoHash>> {
        list(&self.root.join("downloads"), |n| n.parse().ok())
    }

    pub fn remove_download(&self, ih: &InfoHash) -> Result<bool> {
        self.set_lazy(ih, None)?;
        remove(&self.download_path(ih))
    }

    fn lazy_path(&self, ih: &InfoHash) -> PathBuf {
        self.root
            .join("downloads")
            .join(format!("{}.lazy", ih.to_hex()))
    }

    /// Marks a download as lazy (its pieces are fetched only when a mount reads them),
    /// remembering the peers it was fetched from; or as wanted whole again.
    pub fn set_lazy(&self, ih: &InfoHash, lazy: Option<&[std::net::SocketAddr]>) -> Result<()> {
        match lazy {
            Some(peers) => {
                let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
                write_atomic(&self.lazy_path(ih), text.as_bytes())
            }
            None => remove(&self.lazy_path(ih)).map(drop),
        }
    }

    /// The peers a lazy download was fetched from (lines that do not parse are skipped).
    pub fn lazy_peers(&self, ih: &InfoHash) -> Result<Vec<std::net::SocketAddr>> {
        let text = read_opt(&self.lazy_path(ih))?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    pub fn is_lazy(&self, ih: &InfoHash) -> bool {
        self.lazy_path(ih).exists()
    }

    fn pin_path(&self, ih: &InfoHash) -> PathBuf {
        self.root.join("pins").join(ih.to_hex())
    }

    /// Keeps a torrent alive without a ref (see the module doc).
    pub fn pin(&self, ih: &InfoHash) -> Result<()> {
        if self.pin_path(ih).exists() {
            return Ok(()); // keeps its label
        }
        write_atomic(&self.pin_path(ih), b"")
    }

    /// Pins a torrent under a name of the user's (`cas add --name`).
    pub fn set_label(&self, ih: &InfoHash, name: &str) -> Result<()> {
        write_atomic(&self.pin_path(ih), name.as_bytes())
    }

    /// The name a pinned torrent was given, if any.
    pub fn label(&self, ih: &InfoHash) -> Result<Option<String>> {
        Ok(read_opt(&self.pin_path(ih))?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    pub fn unpin(&self, ih: &InfoHash) -> Result<bool> {
        remove(&self.pin_path(ih))
    }

    pub fn pins(&self) -> Result<Vec<InfoHash>> {
        list(&self.root.join("pins"), |n| n.parse().ok())
    }

    pub fn put_tree(&self, id: &TreeId, record: &TreeRecord) -> Result<()> {
        write_atomic(&self.tree_path(id), &encode(TREE_MAGIC, record))
    }

    pub fn tree(&self, id: &TreeId) -> Result<Option<TreeRecord>> {
        let path = self.tree_path(id);
        read_opt(&path)?
            .map(|b| decode(TREE_MAGIC, &b, &path))
            .transpose()
    }

    pub fn trees(&self) -> Result<Vec<TreeId>> {
        list(&self.root.join("trees"), |n| n.parse().ok())
    }

    pub fn remove_tree(&self, id: &TreeId) -> Result<bool> {
        remove(&self.tree_path(id))
    }

    pub fn set_ref(&self, name: &str, tree: &TreeId) -> Result<()> {
        check_ref_name(name)?;
        write_atomic(&self.ref_path(name), format!("{tree}\n").as_bytes())
    }

    pub fn get_ref(&self, name: &str) -> Result<Option<TreeId>> {
        if check_ref_name(name).is_err() {
            return Ok(None);
        }
        let path = self.ref_path(name);
        let Some(bytes) = read_opt(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim().parse().map(Some).map_err(|_| Error::Corrupt {
            path,
            reason: "ref does not hold a tree id".into(),
        })
    }

    /// Every ref, sorted by name. A ref that does not hold a tree id is an error.
    pub fn refs(&self) -> Result<Vec<(String, TreeId)>> {
        let (refs, mut unreadable) = self.refs_and_unreadable()?;
        match unreadable.pop() {
            Some((_, e)) => Err(e),
            None => Ok(refs),
        }
    }

    /// Every ref that holds a tree id, sorted by name, and apart from them each ref
    /// whose file does not ([`Error::Corrupt`] naming the file); other errors are
    /// returned as such.
    pub fn refs_and_unreadable(&self) -> Result<Unreadable<(String, TreeId), String>> {
        let names = list(&self.root.join("refs"), |n| {
            check_ref_name(n).is_ok().then(|| n.to_string())
        })?;
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for name in names {
            match self.get_ref(&name) {
                Ok(Some(id)) => out.push((name, id)),
                Ok(None) => {}
                Err(e @ Error::Corrupt { .. }) => bad.push((name, e)),
                Err(e) => return Err(e),
            }
        }
        out.sort();
        bad.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((out, bad))
    }

    /// Moves a ref whose file does not hold a tree id to `damaged/refs/`; returns
    /// where it went.
    pub fn set_aside_ref(&self, name: &str) -> Result<PathBuf> {
        check_ref_name(name)?;
        self.set_aside(&self.ref_path(name), "refs")
    }

    /// Moves a tree record that does not decode to `damaged/trees/`.
    pub fn set_aside_tree(&self, id: &TreeId) -> Result<PathBuf> {
        self.set_aside(&self.tree_path(id), "trees")
    }

    /// Moves a torrent record that does not decode to `damaged/torrents/`.
    pub fn set_aside_torrent(&self, ih: &InfoHash) -> Result<PathBuf> {
        self.set_aside(&self.torrent_path(ih), "torrents")
    }

    fn set_aside(&self, path: &Path, kind: &str) -> Result<PathBuf> {
        let dir = self.root.join("damaged").join(kind);
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir, "create directory"))?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut to = dir.join(format!("{name}-{secs}"));
        let mut n = 1;
        while to.exists() {
            to = dir.join(format!("{name}-{secs}-{n}"));
            n += 1;
        }
        std::fs::rename(path, &to).map_err(Error::io(path, "move aside"))?;
        sync_dir(&dir)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(to)
    }

    pub fn remove_ref(&self, name: &str) -> Result<bool> {
        check_ref_name(name)?;
        remove(&self.ref_path(name))
    }
}
