//! What a mount shows: the store as a read-only tree, for the FUSE adapter in `fuse/`.
//!
//! ```text
//! /refs/<name>/...         each ref's current tree
//! /trees/<tree id>/...     every tree in the store
//! /blobs/<blake3>          every stored file, by content hash
//! /torrents/<info-hash>/.. every torrent, stored or being fetched, under its own names
//! ```
//!
//! Inode numbers are handed out as nodes are first looked up and stay fixed while
//! mounted. Reads go through verified chunks only ([`content`]): a piece the store
//! lacks is fetched first when an engine runs (a [`Fetch`]), else it is an I/O error,
//! like a chunk that fails its hash; never zeros or unverified bytes.

mod content;
mod layout;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cas_fuse::{Node, NodeKind, ReadBytes, ReadOnlyTree, TreeError, ROOT};

use crate::catalog::TorrentKind;
use crate::manifest::EntryKind;
use crate::{read, ContentId, InfoHash, Store, TreeId};
pub use content::Fetch;
use content::{io, Reader, TorrentView};
use layout::{last_component, Layout, Loaded};

/// What an inode stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Place {
    Root,
    Refs,
    Trees,
    Blobs,
    Torrents,
    /// The root of a tree (under refs/ or trees/).
    Tree(TreeId),
    /// Entry `index` of a tree's manifest.
    Entry(TreeId, usize),
    Blob(ContentId),
    /// The directory of a torrent under torrents/.
    Torrent(InfoHash),
    /// Entry `index` of a torrent's [`Layout`].
    TorrentEntry(InfoHash, usize),
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

fn dir(ino: u64, mtime: SystemTime) -> Node {
    Node {
        ino,
        kind: NodeKind::Dir,
        mode: 0o555,
        mtime,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The store as a tree of nodes.
pub struct StoreTree {
    store: Arc<Store>,
    inodes: Mutex<Inodes>,
    trees: Mutex<HashMap<TreeId, Arc<Loaded>>>,
    layouts: Mutex<HashMap<InfoHash, Arc<Layout>>>,
    reader: Reader,
}

impl StoreTree {
    /// A tree over `store`; missing pieces are asked of `fetch`, or are I/O errors.
    pub fn new(store: Arc<Store>, fetch: Option<Arc<dyn Fetch>>) -> Self {
        let mut inodes = Inodes::default();
        let root = inodes.ino(Place::Root);
        debug_assert_eq!(root, ROOT);
        StoreTree {
            reader: Reader::new(store.clone(), fetch),
            store,
            inodes: Mutex::new(inodes),
            trees: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
        }
    }

    fn ino(&self, place: Place) -> u64 {
        lock(&self.inodes).ino(place)
    }

    fn place(&self, ino: u64) -> Result<Place, TreeError> {
        let inodes = lock(&self.inodes);
        let i = usize::try_from(ino).ok().and_then(|i| i.checked_sub(1));
        i.and_then(|i| inodes.places.get(i).cloned())
            .ok_or(TreeError::NotFound)
    }

    fn tree(&self, id: &TreeId) -> Result<Arc<Loaded>, TreeError> {
        if let Some(t) = lock(&self.trees).get(id) {
            return Ok(t.clone());
        }
        let manifest = read::load_manifest(&self.store, id).map_err(io)?;
        let loaded = Arc::new(Loaded::new(manifest));
        lock(&self.trees).insert(*id, loaded.clone());
        Ok(loaded)
    }

    fn layout(&self, ih: &InfoHash) -> Result<Arc<Layout>, TreeError> {
        if let Some(l) = lock(&self.layouts).get(ih) {
            return Ok(l.clone());
        }
        let layout = Arc::new(Layout::new(self.reader.view(ih)?));
        lock(&self.layouts).insert(*ih, layout.clone());
        Ok(layout)
    }

    /// Every torrent: recorded ones and downloads.
    fn all_torrents(&self) -> Result<Vec<InfoHash>, TreeError> {
        let c = self.store.catalog();
        let mut all = c.torrents().map_err(io)?;
        all.extend(c.downloads().map_err(io)?);
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// The file torrent of a stored content hash.
    fn blob_torrent(&self, content: &ContentId) -> Result<Option<InfoHash>, TreeError> {
        for ih in self.store.catalog().torrents().map_err(io)? {
            if self.reader.view(&ih)?.kind == Some(TorrentKind::File { content: *content }) {
                return Ok(Some(ih));
            }
        }
        Ok(None)
    }

    fn attrs(&self, ino: u64, place: &Place) -> Result<Node, TreeError> {
        Ok(match place {
            Place::Root
            | Place::Refs
            | Place::Trees
            | Place::Blobs
            | Place::Torrents
            | Place::Tree(_)
            | Place::Torrent(_) => dir(ino, UNIX_EPOCH),
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
                Node {
                    ino,
                    kind: NodeKind::File {
                        size: self.reader.view(&ih)?.meta.length,
                    },
                    mode: 0o444,
                    mtime: UNIX_EPOCH,
                }
            }
            Place::TorrentEntry(ih, i) => {
                let l = self.layout(ih)?;
                match l.entries[*i].1 {
                    None => dir(ino, UNIX_EPOCH),
                    Some(f) => Node {
                        ino,
                        kind: NodeKind::File {
                            size: l.view.meta.files[f].length,
                        },
                        mode: 0o444,
                        mtime: UNIX_EPOCH,
                    },
                }
            }
        })
    }

    /// The torrent and the byte range in it that file `ino` is.
    fn file_range(&self, place: Place) -> Result<Option<(Arc<TorrentView>, u64, u64)>, TreeError> {
        let whole = |ih: InfoHash| -> Result<_, TreeError> {
            let v = self.reader.view(&ih).map_err(|e| match e {
                TreeError::NotFound => io(format!(
                    "torrent {ih} is neither stored nor being fetched (`cas get --lazy`)"
                )),
                e => e,
            })?;
            let len = v.meta.length;
            Ok(Some((v, 0, len)))
        };
        match place {
            Place::Entry(tree, i) => {
                let t = self.tree(&tree)?;
                match &t.manifest.entries[i].kind {
                    EntryKind::File {
                        info_hash: Some(ih),
                        ..
                    } => whole(*ih),
                    EntryKind::File {
                        info_hash: None, ..
                    } => Ok(None),
                    _ => Err(TreeError::NotFound),
                }
            }
            Place::Blob(content) => whole(self.blob_torrent(&content)?.ok_or(TreeError::NotFound)?),
            Place::TorrentEntry(ih, i) => {
                let l = self.layout(&ih)?;
                let f = l.entries[i].1.ok_or(TreeError::NotFound)?;
                let file = &l.view.meta.files[f];
                Ok(Some((
                    l.view.clone(),
                    file.offset,
                    file.offset + file.length,
                )))
            }
            _ => Err(TreeError::NotFound),
        }
    }

    /// The children of a directory inside a tree or a torrent, as places.
    fn kids(&self, place: &Place) -> Result<Vec<(Vec<u8>, Place)>, TreeError> {
        Ok(match place {
            Place::Tree(tree) | Place::Entry(tree, _) => {
                let t = self.tree(tree)?;
                let at = match place {
                    Place::Entry(_, i) => Some(*i),
                    _ => None,
                };
                let kids = t.children.get(&at).map(Vec::as_slice).unwrap_or_default();
                kids.iter()
                    .map(|&i| (t.name(i).to_vec(), Place::Entry(*tree, i)))
                    .collect()
            }
            Place::Torrent(ih) | Place::TorrentEntry(ih, _) => {
                let l = self.layout(ih)?;
                let at = match place {
                    Place::TorrentEntry(_, i) => Some(*i),
                    _ => None,
                };
                let kids = l.children.get(&at).map(Vec::as_slice).unwrap_or_default();
                kids.iter()
                    .map(|&i| {
                        let name = last_component(&l.entries[i].0).to_vec();
                        (name, Place::TorrentEntry(*ih, i))
                    })
                    .collect()
            }
            _ => Vec::new(),
        })
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
                b"torrents" => Place::Torrents,
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
            Place::Torrents => {
                let ih: InfoHash = name_str.parse().map_err(|_| TreeError::NotFound)?;
                self.reader.view(&ih)?;
                Place::Torrent(ih)
            }
            Place::Blob(_) => return Err(TreeError::NotFound),
            dir => self
                .kids(&dir)?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p)
                .ok_or(TreeError::NotFound)?,
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
            Place::Root => ["blobs", "refs", "torrents", "trees"]
                .map(|n| n.as_bytes().to_vec())
                .to_vec(),
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
                    if let Some(TorrentKind::File { content }) = self.reader.view(&ih)?.kind {
                        contents.push(content.to_hex().into_bytes());
                    }
                }
                contents.sort();
                contents.dedup();
                contents
            }
            Place::Torrents => self
                .all_torrents()?
                .iter()
                .map(|ih| ih.to_hex().into_bytes())
                .collect(),
            Place::Blob(_) => return Err(TreeError::NotFound),
            dir => {
                let mut out = Vec::new();
                for (name, place) in self.kids(&dir)? {
                    let ino = self.ino(place.clone());
                    out.push((name, self.attrs(ino, &place)?));
                }
                return Ok(out);
            }
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
        self.read_shared(ino, offset, len)
            .map(|b| b.as_slice().to_vec())
    }

    fn read_shared(&self, ino: u64, offset: u64, len: u32) -> Result<ReadBytes, TreeError> {
        let Some((view, start, end)) = self.file_range(self.place(ino)?)? else {
            return Ok(ReadBytes::Owned(Vec::new()));
        };
        let from = start.saturating_add(offset);
        if from >= end {
            return Ok(ReadBytes::Owned(Vec::new()));
        }
        self.reader
            .read_shared(&view, from, end.min(from.saturating_add(len.into())))
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
        let t = StoreTree::new(store, None);
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
