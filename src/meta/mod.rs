//! Metainfo: bencode, .torrent building, magnet links.

pub mod bencode;
pub mod parse;
pub mod torrent;
