//! Building v1 metainfo (BEP 3) for what cas publishes: single-file torrents named by
//! content hash, and multi-file directory torrents with BEP 47 pad files.
//!
//! The info dictionary is built here, not by librqbit's `create_torrent`, which
//! writes one piece hash too many when the length is a multiple of the piece length.

use sha1::{Digest, Sha1};

use super::bencode::Value;
use crate::{InfoHash, PieceHash};

/// Torrent options that do not depend on the content.
#[derive(Clone, Debug, Default)]
pub struct Publish {
    /// BEP 27 private flag (part of the info dictionary, so of the info-hash).
    pub private: bool,
    /// Announce URLs, first one also as `announce`.
    pub trackers: Vec<String>,
}

/// One entry of a multi-file torrent.
#[derive(Clone, Debug)]
pub struct TorrentFile {
    /// Path components, UTF-8.
    pub path: Vec<String>,
    pub length: u64,
    /// A BEP 47 pad file (attr "p").
    pub pad: bool,
}

fn pieces_value(pieces: &[PieceHash]) -> Value {
    Value::Bytes(pieces.iter().flat_map(|p| p.0).collect())
}

fn with_private(mut pairs: Vec<(&'static str, Value)>, publish: &Publish) -> Value {
    if publish.private {
        pairs.push(("private", Value::Int(1)));
    }
    Value::dict(pairs)
}

/// Info dictionary of a single-file torrent.
pub fn single_file_info(
    name: &str,
    length: u64,
    piece_length: u32,
    pieces: &[PieceHash],
    publish: &Publish,
) -> Value {
    with_private(
        vec![
            ("length", Value::Int(length as i64)),
            ("name", Value::str(name)),
            ("piece length", Value::Int(piece_length.into())),
            ("pieces", pieces_value(pieces)),
        ],
        publish,
    )
}

/// Info dictionary of a multi-file torrent.
pub fn multi_file_info(
    name: &str,
    files: &[TorrentFile],
    piece_length: u32,
    pieces: &[PieceHash],
    publish: &Publish,
) -> Value {
    let files = files
        .iter()
        .map(|f| {
            let mut pairs = vec![
                ("length", Value::Int(f.length as i64)),
                (
                    "path",
                    Value::List(f.path.iter().map(|c| Value::str(c)).collect()),
                ),
            ];
            if f.pad {
                pairs.push(("attr", Value::str("p")));
            }
            Value::dict(pairs)
        })
        .collect();
    with_private(
        vec![
            ("files", Value::List(files)),
            ("name", Value::str(name)),
            ("piece length", Value::Int(piece_length.into())),
            ("pieces", pieces_value(pieces)),
        ],
        publish,
    )
}

/// The info-hash of an info dictionary.
pub fn info_hash(info: &Value) -> InfoHash {
    InfoHash(Sha1::digest(info.encode()).into())
}

/// A complete .torrent file around `info`.
pub fn metainfo(info: Value, publish: &Publish) -> Vec<u8> {
    let mut pairs = vec![
        (
            "created by",
            Value::str(concat!("cas ", env!("CARGO_PKG_VERSION"))),
        ),
        ("info", info),
    ];
    if let Some(first) = publish.trackers.first() {
        pairs.push(("announce", Value::str(first)));
        pairs.push((
            "announce-list",
            Value::List(
                publish
                    .trackers
                    .iter()
                    .map(|t| Value::List(vec![Value::str(t)]))
                    .collect(),
            ),
        ));
    }
    Value::dict(pairs).encode()
}

/// A magnet link (BEP 9) for the torrent.
pub fn magnet(ih: &InfoHash, name: &str, trackers: &[String]) -> String {
    let mut out = format!("magnet:?xt=urn:btih:{ih}&dn={}", percent_encode(name));
    for t in trackers {
        out.push_str("&tr=");
        out.push_str(&percent_encode(t));
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Number of pieces for `length` bytes: ceil(length / piece_length).
pub fn piece_count(length: u64, piece_length: u32) -> u64 {
    length.div_ceil(piece_length.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_count_exact_multiple_has_no_extra_piece() {
        assert_eq!(piece_count(2 << 20, 1 << 20), 2);
        assert_eq!(piece_count((2 << 20) + 1, 1 << 20), 3);
        assert_eq!(piece_count(1, 1 << 20), 1);
    }

    #[test]
    fn magnet_escapes_name() {
        let ih = InfoHash([0xab; 20]);
        let m = magnet(&ih, "a b&c", &["http://t/announce".into()]);
        assert_eq!(
            m,
            format!(
                "magnet:?xt=urn:btih:{}&dn=a%20b%26c&tr=http%3A%2F%2Ft%2Fannounce",
                "ab".repeat(20)
            )
        );
    }
}
