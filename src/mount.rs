//! What a mount shows: the store as a read-only tree, for the FUSE adapter in `fuse/`.
//!
//! ```text
//! /refs/<name>/...      each ref's current tree
//! /trees/<tree id>/...  every tree in the store
//! /blobs/<blake3>       every stored file, by content hash
//! ```
//!
//! Inode numbers are handed out as nodes are first looked up and stay fixed while
//! mounted. Reads go through verified chunks only: a piece the store lacks, or one that
//! fails its hash, is an I/O error, never zeros or unverified bytes. The last chunks
//! read are kept, so sequential reads of 128 KiB do not re-read and re-verify a piece.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cas_fuse::{Node, NodeKind, ReadOnlyTree, TreeError, ROOT};

use crate::catalog::{TorrentKind, TorrentRecord};
use crate::manifest::{EntryKind, Manifest};
use crate::store::chunk::VerifiedChunk;
use crate::{read, ChunkId, ContentId, InfoHash, Store, TreeId};

/// Chunks kept for reads.
const CACHE_CHUNKS: usize = 16;

/// What an inode stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Place {
    Root,
    Refs,
    Trees,
    Blobs,
    /// The root of a tree (under refs/ or trees/).
    Tree(TreeId),
    /// Entry `index` of a tree's manifest.
    Entry(TreeId, usize),
    Blob(ContentId),
}

/// A manifest with each directory's children worked out.
struct Loaded {
    manifest: Manifest,
    /// Children of each directory: `None` is the tree root, else an entry index.
    children: HashMap<Option<usize>, Vec<usize>>,
}

impl Loaded {
    fn new(manifest: Manifest) -> Self {
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
        for (i, e) in manifest.entries.iter().enumerate() {
            let parent = e
                .path
                .iter()
                .rposition(|&b| b == b'/')
                .and_then(|slash| index.get(&e.path[..slash]).copied());
            children.entry(parent).or_default().push(i);
            index.insert(&e.path, i);
        }
        drop(index);
        Loaded { manifest, children }
    }

    fn name(&self, i: usize) -> &[u8] {
        let p = &self.manifest.entries[i].path;
        match p.iter().rposition(|&b| b == b'/') {
            Some(slash) => &p[slash + 1..],
            None => p,
        }
    }
}

/// The store as a tree of nodes.
pub struct StoreTree {
    store: Arc<Store>,
    inodes: Mutex<Inodes>,
    trees: Mutex<HashMap<TreeId, Arc<Loaded>>>,
    files: Mutex<HashMap<InfoHash, Arc<TorrentRecord>>>,
    cache: Mutex<VecDeque<Arc<VerifiedChunk>>>,
}

#[derive(Default)]
struct Inodes {
    by_place: HashMap<Place, u64>,
    places: Vec<Place>,
}

impl Inodes {
    fn ino(&mut self, place: Place) -> u64 {
        if let Some(&i) = self.by_place.get(&place) {
            return i;
        }
        self.places.push(place.clone());
        let ino = self.places.len() as u64; // the root, pushed first, is 1
        self.by_place.insert(place, ino);
        ino
    }
}

fn io(e: impl std::fmt::Display) -> TreeError {
    TreeError::Io(e.to_string())
}

fn dir(ino: u64, mtime: SystemTime) -> Node {
    Node {
        ino,
        kind: NodeKind::Dir,
        mode: 0o555,
        mtime,
    }
}

impl StoreTree {
    pub fn new(store: Arc<Store>) -> Self {
        let mut inodes = Inodes::default();
        let root = inodes.ino(Place::Root);
        debug_assert_eq!(root, ROOT);
        StoreTree {
            store,
            inodes: Mutex::new(inodes),
            trees: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            cache: Mutex::new(VecDeque::new()),
        }
    }

    fn ino(&self, place: Place) -> u64 {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ino(place)
    }

    fn place(&self, ino: u64) -> Result<Place, TreeError> {
        let inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        let i = usize::try_from(ino).ok().and_then(|i| i.checked_sub(1));
        i.and_then(|i| inodes.places.get(i).cloned())
            .ok_or(TreeError::NotFound)
    }

    fn tree(&self, id: &TreeId) -> Result<Arc<Loaded>, TreeError> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(t.clone());
        }
        let manifest = read::load_manifest(&self.store, id).map_err(io)?;
        let loaded = Arc::new(Loaded::new(manifest));
        self.trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id, loaded.clone());
        Ok(loaded)
    }

    fn torrent(&self, ih: &InfoHash) -> Result<Arc<TorrentRecord>, TreeError> {
        if let Some(r) = self.files.lock().unwrap_or_else(|e| e.into_inner()).get(ih) {
            return Ok(r.clone());
        }
        let r = Arc::new(read::torrent(&self.store, ih).map_err(io)?);
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*ih, r.clone());
        Ok(r)
    }

    /// The file torrent of a stored content hash.
    fn blob_torrent(&self, content: &ContentId) -> Result<Option<InfoHash>, TreeError> {
        for ih in self.store.catalog().torrents().map_err(io)? {
            let r = self.torrent(&ih)?;
            if r.kind == (TorrentKind::File { content: *content }) {
                return Ok(Some(ih));
            }
        }
        Ok(None)
    }

    fn attrs(&self, ino: u64, place: &Place) -> Result<Node, TreeError> {
        Ok(match place {
            Place::Root | Place::Refs | Place::Trees | Place::Blobs | Place::Tree(_) => {
                dir(ino, UNIX_EPOCH)
            }
            Place::Entry(tree, i) => {
                let t = self.tree(tree)?;
                let e = &t.manifest.entries[*i];
                let mtime = if e.mtime_secs >= 0 {
                    UNIX_EPOCH + Duration::new(e.mtime_secs as u64, e.mtime_nanos.min(999_999_999))
                } else {
                    UNIX_EPOCH
                };
                let kind = match &e.kind {
                    EntryKind::Dir => NodeKind::Dir,
                    EntryKind::File { size, .. } => NodeKind::File { size: *size },
                    EntryKind::Symlink { target } => NodeKind::Symlink {
                        target: target.clone(),
                    },
                };
                Node {
                    ino,
                    kind,
                    mode: e.mode & 0o7777,
                    mtime,
                }
            }
            Place::Blob(content) => {
                let ih = self.blob_torrent(content)?.ok_or(TreeError::NotFound)?;
                let r = self.torrent(&ih)?;
                Node {
                    ino,
                    kind: NodeKind::File { size: r.length },
                    mode: 0o444,
                    mtime: UNIX_EPOCH,
                }
            }
        })
    }

    fn chunk(&self, id: &ChunkId) -> Result<Arc<VerifiedChunk>, TreeError> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.iter().find(|c| c.id() == *id) {
            return Ok(c.clone());
        }
        drop(cache);
        let chunk = Arc::new(self.store.get(id).map_err(io)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CHUNKS {
            cache.pop_front();
        }
        cache.push_back(chunk.clone());
        Ok(chunk)
    }

    /// Bytes `offset..offset+len` of a file torrent's content.
    fn read_torrent(&self, r: &TorrentRecord, offset: u64, len: u32) -> Result<Vec<u8>, TreeError> {
        let end = r.length.min(offset.saturating_add(len.into()));
        let plen = u64::from(r.piece_length);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let piece = (at / plen) as usize;
            let within = (at % plen) as usize;
            let take = ((end - at) as usize).min(plen as usize - within);
            let id = r
                .pieces
                .get(piece)
                .ok_or_else(|| io("piece beyond the torrent"))?;
            let chunk = self.chunk(id)?;
            let bytes = chunk.bytes();
            let have = bytes.len().saturating_sub(within).min(take);
            out.extend_from_slice(&bytes[within.min(bytes.len())..within.min(bytes.len()) + have]);
            // A chunk's trailing zeros may be left out of its bytes.
            out.resize(out.len() + (take - have), 0);
            at += take as u64;
        }
        Ok(out)
    }
}

impl ReadOnlyTree for StoreTree {
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Node, TreeError> {
        let name_str = std::str::from_utf8(name).map_err(|_| TreeError::NotFound)?;
        let place = match self.place(parent)? {
            Place::Root => match name {
                b"refs" => Place::Refs,
                b"trees" => Place::Trees,
                b"blobs" => Place::Blobs,
                _ => return Err(TreeError::NotFound),
            },
            Place::Refs => {
                let tree = self
                    .store
                    .catalog()
                    .get_ref(name_str)
                    .map_err(io)?
                    .ok_or(TreeError::NotFound)?;
                Place::Tree(tree)
            }
            Place::Trees => {
                let tree: TreeId = name_str.parse().map_err(|_| TreeError::NotFound)?;
                if self.store.catalog().tree(&tree).map_err(io)?.is_none() {
                    return Err(TreeError::NotFound);
                }
                Place::Tree(tree)
            }
            Place::Blobs => {
                let content: ContentId = name_str.parse().map_err(|_| TreeError::NotFound)?;
                self.blob_torrent(&content)?.ok_or(TreeError::NotFound)?;
                Place::Blob(content)
            }
            Place::Tree(tree) | Place::Entry(tree, _) => {
                let t = self.tree(&tree)?;
                let dir = match self.place(parent)? {
                    Place::Entry(_, i) => Some(i),
                    _ => None,
                };
                let kids = t.children.get(&dir).map(Vec::as_slice).unwrap_or_default();
                let i = kids
                    .iter()
                    .copied()
                    .find(|&i| t.name(i) == name)
                    .ok_or(TreeError::NotFound)?;
                Place::Entry(tree, i)
            }
            Place::Blob(_) => return Err(TreeError::NotFound),
        };
        let ino = self.ino(place.clone());
        self.attrs(ino, &place)
    }

    fn node(&self, ino: u64) -> Result<Node, TreeError> {
        let place = self.place(ino)?;
        self.attrs(ino, &place)
    }

    fn children(&self, ino: u64) -> Result<Vec<(Vec<u8>, Node)>, TreeError> {
        let names: Vec<Vec<u8>> = match self.place(ino)? {
            Place::Root => vec![b"blobs".to_vec(), b"refs".to_vec(), b"trees".to_vec()],
            Place::Refs => {
                let refs = self.store.catalog().refs().map_err(io)?;
                refs.into_iter().map(|(n, _)| n.into_bytes()).collect()
            }
            Place::Trees => {
                let mut ids = self.store.catalog().trees().map_err(io)?;
                ids.sort();
                ids.iter().map(|t| t.to_hex().into_bytes()).collect()
            }
            Place::Blobs => {
                let mut contents = Vec::new();
                for ih in self.store.catalog().torrents().map_err(io)? {
                    if let TorrentKind::File { content } = self.torrent(&ih)?.kind {
                        contents.push(content.to_hex().into_bytes());
                    }
                }
                contents.sort();
                contents.dedup();
                contents
            }
            Place::Tree(tree) | Place::Entry(tree, _) => {
                let t = self.tree(&tree)?;
                let dir = match self.place(ino)? {
                    Place::Entry(_, i) => Some(i),
                    _ => None,
                };
                let kids = t.children.get(&dir).map(Vec::as_slice).unwrap_or_default();
                kids.iter().map(|&i| t.name(i).to_vec()).collect()
            }
            Place::Blob(_) => return Err(TreeError::NotFound),
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            // An entry that vanished meanwhile (a ref removed) is left out.
            if let Ok(node) = self.lookup(ino, &name) {
                out.push((name, node));
            }
        }
        Ok(out)
    }

    fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>, TreeError> {
        let ih = match self.place(ino)? {
            Place::Entry(tree, i) => {
                let t = self.tree(&tree)?;
                match &t.manifest.entries[i].kind {
                    EntryKind::File {
                        info_hash: Some(ih),
                        ..
                    } => *ih,
                    EntryKind::File {
                        info_hash: None, ..
                    } => return Ok(Vec::new()),
                    _ => return Err(TreeError::NotFound),
                }
            }
            Place::Blob(content) => self.blob_torrent(&content)?.ok_or(TreeError::NotFound)?,
            _ => return Err(TreeError::NotFound),
        };
        let r = self.torrent(&ih)?;
        self.read_torrent(&r, offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import, ImportOptions};

    #[test]
    fn refs_trees_and_blobs_read_back_as_imported() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("photos");
        std::fs::create_dir_all(src.join("raw/empty")).unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(src.join("raw/big.bin"), &big).unwrap();
        std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
        std::os::unix::fs::symlink("raw/big.bin", src.join("link")).unwrap();
        let store = Arc::new(Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap());
        import(&store, &src, &ImportOptions::default(), &|_| {}, &|_| {}).unwrap();
        let t = StoreTree::new(store);
        let file = cas_fuse::resolve(&t, b"refs/photos/raw/big.bin").unwrap();
        assert_eq!(file.kind, NodeKind::File { size: 200_000 });
        // Reads of any size and offset, across pieces, give the file's bytes.
        let mut got = Vec::new();
        while got.len() < big.len() {
            let part = t.read(file.ino, got.len() as u64, 70_001).unwrap();
            assert!(!part.is_empty());
            got.extend(part);
        }
        assert_eq!(got, big);
        assert!(t.read(file.ino, 200_000, 10).unwrap().is_empty());
        let link = cas_fuse::resolve(&t, b"refs/photos/link").unwrap();
        assert_eq!(
            link.kind,
            NodeKind::Symlink {
                target: b"raw/big.bin".to_vec()
            }
        );
        let names: Vec<Vec<u8>> = t
            .children(cas_fuse::resolve(&t, b"refs/photos").unwrap().ino)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [b"a.txt".to_vec(), b"link".to_vec(), b"raw".to_vec()]
        );
        let blob = format!("blobs/{}", blake3::hash(&big).to_hex());
        let b = cas_fuse::resolve(&t, blob.as_bytes()).unwrap();
        assert_eq!(t.read(b.ino, 199_990, 100).unwrap(), big[199_990..]);
        let tree_dir = cas_fuse::resolve(&t, b"trees").unwrap();
        assert_eq!(t.children(tree_dir.ino).unwrap().len(), 1);
        assert!(matches!(
            cas_fuse::resolve(&t, b"refs/nope"),
            Err(TreeError::NotFound)
        ));
    }
}
