//! cas: a content-addressed chunk store whose transport is BitTorrent.
//!
//! Every torrent piece is stored once, identified by its BLAKE3 and findable by its
//! SHA-1. A file's torrent is named by the BLAKE3 of its content, so the same bytes
//! give the same info-hash anywhere; a directory is a tree (a canonical manifest)
//! published as a torrent too, and a ref names a tree.
//!
//! Where to start reading, bottom up:
//! - [`chunks`]: packs, the sled index, the verified-chunk type, rebuild; chunks only;
//! - [`catalog`]: the torrents, trees and refs a store publishes;
//! - [`store`]: [`Store`], which owns both: gc, fsck, content read back;
//! - [`meta`]: bencode and .torrent building; [`manifest`]: the tree format;
//! - [`import`]: a directory in; [`adopt`]: a torrent made elsewhere, with its data;
//!   [`export`] and [`read`]: content out; [`remove`]: `cas rm`; [`stats`]: figures;
//! - [`engine`]: librqbit with the store as its storage, behind [`engine::Engine`];
//! - [`mount`]: the store as a read-only tree for the FUSE crate;
//! - [`channel`]: signing keys and signed updates; [`sync`]: a directory kept the same
//!   on every node of a channel;
//! - [`webapi`]: qBittorrent's Web API and Prometheus metrics (`cas serve --http`);
//! - [`service`]: `cas serve` as a library;
//! - the `cas` binary (`src/main.rs`, `src/cli/`) is a thin layer over these.
//!
//! docs/ARCHITECTURE.md is the map; docs/on-disk-format.md describes every byte.

pub mod adopt;
pub mod catalog;
pub mod channel;
pub mod chunks;
pub mod config;
mod dirfd;
pub mod engine;
mod error;
pub mod export;
#[cfg(test)]
mod fuzz;
mod id;
pub mod import;
pub mod manifest;
pub mod meta;
pub mod mount;
pub mod read;
pub mod remove;
pub mod service;
pub mod stats;
pub mod store;
pub mod sync;
pub mod webapi;

pub use error::{Error, Result};
pub use id::{ChunkId, ContentId, InfoHash, PieceHash, TreeId};
pub use store::Store;
