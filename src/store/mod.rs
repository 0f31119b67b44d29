//! A store: its chunks ([`crate::chunks`]), its catalog ([`crate::catalog`]) and its
//! settings (`config.json`), and what is defined by both: what is live ([`gc`]), what
//! a check of the whole store reports ([`fsck`]), and a torrent's content read back
//! from its chunks ([`content`]).
//!
//! The chunk store below knows nothing of torrents, trees or refs; the catalog knows
//! nothing of packs. This layer owns both, the way a repository owns its blobs and
//! its index.

pub mod cache;
pub mod content;
pub mod content_hash;
pub mod finish;
pub mod fsck;
pub mod gc;
pub mod migrate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::chunks::chunk::VerifiedChunk;
use crate::chunks::index::IndexEntry;
use crate::chunks::lock::StoreLock;
use crate::chunks::{write_atomic, ChunkStore};
use crate::{ChunkId, Error, InfoHash, PieceHash, Result, TreeId};

/// Piece length of a new store unless asked otherwise: 1 MiB.
pub const DEFAULT_PIECE_LENGTH: u32 = 1 << 20;

// A piece is stored as one chunk: every piece length a torrent may have fits a record.
const _: () = assert!(crate::meta::parse::MAX_PIECE_LENGTH <= crate::chunks::MAX_CHUNK_LEN as u64);

/// `config.json`: settings fixed when the store is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// On-disk format version.
    pub format: u32,
    /// Piece length of the torrents `cas import` makes.
    pub piece_length: u32,
}

/// An open store. Holds the store lock until dropped.
pub struct Store {
    root: PathBuf,
    config: Config,
    catalog: Catalog,
    chunks: ChunkStore,
}

impl Store {
    /// Opens the store at `root`, creating it (with `piece_length`, or the default)
    /// if the directory does not exist or is empty.
    pub fn open(root: &Path, piece_length: Option<u32>) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(Error::io(root, "create store directory"))?;
        let lock = StoreLock::acquire(root)?;
        let config_path = root.join("config.json");
        let mut config = match std::fs::read(&config_path) {
            Ok(bytes) => {
                let config: Config =
                    serde_json::from_slice(&bytes).map_err(|e| Error::NotAStore {
                        path: config_path.clone(),
                        reason: format!("unreadable store config: {e}"),
                    })?;
                if config.format != 1 && config.format != migrate::FORMAT {
                    return Err(Error::NotAStore {
                        path: config_path,
                        reason: format!(
                            "store format {} is not supported by this cas (it knows {}, and migrates 1)",
                            config.format,
                            migrate::FORMAT
                        ),
                    });
                }
                crate::meta::check_piece_length(config.piece_length.into())?;
                config
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let config = Config {
                    format: migrate::FORMAT,
                    piece_length: piece_length.unwrap_or(DEFAULT_PIECE_LENGTH),
                };
                let bytes = serde_json::to_vec_pretty(&config).expect("config serialises");
                write_atomic(&config_path, &bytes)?;
                config
            }
            Err(e) => return Err(Error::io(&config_path, "read store config")(e)),
        };
        let chunks = ChunkStore::open(root, lock)?;
        let catalog = Catalog::open(root)?;
        let old = config.format;
        config.format = migrate::FORMAT;
        let store = Store {
            root: root.to_path_buf(),
            config,
            catalog,
            chunks,
        };
        if old == 1 {
            // Format 1 to 2: directory torrents onto their files' short chunks; the
            // new format is written only once that is durable.
            let r = migrate::padded_pieces(&store)?;
            tracing::info!(
                "store format 1 migrated to {}: {} directory torrents, {} pieces onto their files' chunks; `cas gc` reclaims the padded ones",
                migrate::FORMAT,
                r.records_rewritten,
                r.pieces_repointed
            );
            let bytes = serde_json::to_vec_pretty(&store.config).expect("config serialises");
            write_atomic(&config_path, &bytes)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes every stat cache `cas import` keeps (`imports/`): after a repair or an
    /// index rebuild that may have dropped chunks, a file taken unread would not
    /// store them again.
    pub fn forget_stat_caches(&self) -> Result<()> {
        let dir = self.root.join("imports");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&dir, "list")(e)),
        };
        for entry in entries {
            let path = entry.map_err(Error::io(&dir, "list"))?.path();
            std::fs::remove_file(&path).map_err(Error::io(&path, "remove"))?;
        }
        crate::chunks::sync_dir(&dir)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The chunk store, for what only it knows (the index, the packs).
    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    /// The chunk store to itself (index rebuild, sweep, repair).
    pub fn chunks_mut(&mut self) -> &mut ChunkStore {
        &mut self.chunks
    }

    /// Keeps a tree that was fetched under a ref, `name` or else the tree's id, and
    /// drops the pins of its `torrents`: the ref keeps them alive now (see
    /// [`gc::mark`]). Returns the ref's name.
    pub fn keep_tree(
        &self,
        tree: &TreeId,
        torrents: &[InfoHash],
        name: Option<&str>,
    ) -> Result<String> {
        let name = name.map_or_else(|| tree.to_hex(), str::to_string);
        self.catalog.set_ref(&name, tree)?;
        for ih in torrents {
            self.catalog.unpin(ih)?;
        }
        Ok(name)
    }

    /// See [`ChunkStore::put`].
    pub fn put(&self, chunk: &VerifiedChunk) -> Result<u64> {
        self.chunks.put(chunk)
    }

    /// See [`ChunkStore::put_again`].
    pub fn put_again(&self, chunk: &VerifiedChunk) -> Result<u64> {
        self.chunks.put_again(chunk)
    }

    /// See [`ChunkStore::commit`].
    pub fn commit(&self) -> Result<()> {
        self.chunks.commit()
    }

    /// See [`ChunkStore::has_pending`].
    pub fn has_pending(&self) -> bool {
        self.chunks.has_pending()
    }

    /// See [`ChunkStore::get`].
    pub fn get(&self, id: &ChunkId) -> Result<VerifiedChunk> {
        self.chunks.get(id)
    }

    /// See [`ChunkStore::read_at`].
    pub fn read_at(&self, id: ChunkId, entry: &IndexEntry) -> Result<VerifiedChunk> {
        self.chunks.read_at(id, entry)
    }

    /// See [`ChunkStore::entry`].
    pub fn entry(&self, id: &ChunkId) -> Result<Option<IndexEntry>> {
        self.chunks.entry(id)
    }

    /// See [`ChunkStore::contains`].
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        self.chunks.contains(id)
    }

    /// See [`ChunkStore::find_by_sha1`].
    pub fn find_by_sha1(&self, sha1: &PieceHash) -> Result<Vec<ChunkId>> {
        self.chunks.find_by_sha1(sha1)
    }
}
