//! Reading .torrent files made by anyone (BEP 3 v1, BEP 47 pad attributes).
//!
//! Everything here comes from outside: lengths are bounded, the info-hash is taken
//! over the `info` bytes exactly as written, and every file path is checked so that
//! no torrent can name a file outside the directory it is written into.

use sha1::{Digest, Sha1};

use super::bencode::{self, Value};
use crate::{InfoHash, PieceHash};

/// Largest piece length accepted from a torrent: 64 MiB. The store keeps each piece as
/// one chunk, and a chunk is at most this long (`chunks::MAX_CHUNK_LEN`; the store
/// layer asserts that the two agree).
pub const MAX_PIECE_LENGTH: u64 = 64 << 20;

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaFile {
    /// Checked path components (for a single-file torrent: the name).
    pub path: Vec<String>,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's content.
    pub offset: u64,
    /// A BEP 47 pad file.
    pub pad: bool,
}

/// No two files share a path, and no file sits where another one's directory is.
fn check_distinct(files: &[MetaFile]) -> Result<(), BadTorrent> {
    let mut seen = std::collections::HashSet::new();
    let mut dirs = std::collections::HashSet::new();
    for f in files.iter().filter(|f| !f.pad) {
        for n in 1..f.path.len() {
            dirs.insert(&f.path[..n]);
        }
    }
    for f in files.iter().filter(|f| !f.pad) {
        if !seen.insert(&f.path[..]) || dirs.contains(&f.path[..]) {
            return bad(format!("two files are named {:?}", f.path.join("/")));
        }
    }
    Ok(())
}

/// A hybrid torrent (BEP 52: v1 `pieces` plus a v2 `file tree`) must describe the same
/// files both ways: cas uses the v1 half, and other clients may use the v2 one.
fn check_hybrid(
    info: &Value,
    name: &str,
    single: bool,
    files: &[MetaFile],
) -> Result<(), BadTorrent> {
    let version = info.get("meta version");
    let Some(tree) = info.get("file tree") else {
        return match version {
            None => Ok(()),
            Some(_) => bad("meta version without a file tree"),
        };
    };
    if version.and_then(Value::as_int) != Some(2) {
        return bad("file tree with a meta version other than 2");
    }
    let mut leaves = Vec::new();
    walk_tree(tree, &mut Vec::new(), &mut leaves)?;
    let v1: Vec<(Vec<String>, u64)> = files
        .iter()
        .filter(|f| !f.pad)
        .map(|f| match single {
            true => (vec![name.to_string()], f.length),
            false => (f.path.clone(), f.length),
        })
        .collect();
    if leaves != v1 {
        return bad("the v2 file tree and the v1 files disagree");
    }
    Ok(())
}

/// The files of a v2 `file tree`: `{component: {...}}` down to `{"": {length: N}}`.
fn walk_tree(
    node: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, u64)>,
) -> Result<(), BadTorrent> {
    let Value::Dict(entries) = node else {
        return bad("file tree: an entry is not a dictionary");
    };
    for (key, child) in entries {
        if key.is_empty() {
            let length = child.get("length").and_then(Value::as_int);
            match length {
                Some(n) if n >= 0 && !path.is_empty() && entries.len() == 1 => {
                    out.push((path.clone(), n as u64))
                }
                _ => return bad("file tree: a file entry is malformed"),
            }
            continue;
        }
        path.push(check_component(key).map_err(|e| BadTorrent(format!("file tree: {e}")))?);
        walk_tree(child, path, out)?;
        path.pop();
    }
    Ok(())
}

/// A parsed, checked .torrent.
#[derive(Clone, Debug)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u32,
    pub pieces: Vec<PieceHash>,
    pub files: Vec<MetaFile>,
    /// True for a torrent without a `files` list.
    pub single_file: bool,
    pub length: u64,
    pub private: bool,
    /// Announce URLs, `announce` first, then `announce-list` in order, no repeats.
    pub trackers: Vec<String>,
    /// The raw `info` dictionary.
    pub info: Vec<u8>,
}

impl Metainfo {
    /// The torrent's magnet link: info-hash, name, and every tracker (`announce`
    /// and `announce-list` alike).
    pub fn magnet(&self) -> String {
        super::torrent::magnet(&self.info_hash, &self.name, &self.trackers)
    }
}

/// Why a torrent was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadTorrent(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, BadTorrent> {
    Err(BadTorrent(msg.into()))
}

/// Checks one path component: not empty, not `.` or `..`, no `/`, `\` or NUL, UTF-8.
pub fn check_component(raw: &[u8]) -> Result<String, BadTorrent> {
    let Ok(s) = std::str::from_utf8(raw) else {
        return bad(format!(
            "path component {:?} is not UTF-8",
            String::from_utf8_lossy(raw)
        ));
    };
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return bad(format!("path component {s:?} would escape or is empty"));
    }
    Ok(s.to_string())
}

fn int(v: Option<&Value>, what: &str) -> Result<u64, BadTorrent> {
    match v.and_then(Value::as_int) {
        Some(n) if n >= 0 => Ok(n as u64),
        Some(n) => bad(format!("{what} is negative ({n})")),
        None => bad(format!("{what} is missing or not an integer")),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string)
}

impl Metainfo {
    /// Parses and checks a .torrent file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Metainfo, BadTorrent> {
        let root = bencode::decode(bytes).map_err(|e| BadTorrent(format!("not bencode: {e}")))?;
        let info_raw = bencode::raw_dict_entry(bytes, "info")
            .map_err(|e| BadTorrent(format!("not bencode: {e}")))?
            .ok_or_else(|| BadTorrent("no info dictionary".into()))?;
        let mut m = Metainfo::from_info(info_raw)?;
        let mut trackers: Vec<String> = root.get("announce").and_then(text).into_iter().collect();
        for tier in root
            .get("announce-list")
            .and_then(Value::as_list)
            .unwrap_or_default()
        {
            for url in tier.as_list().unwrap_or_default() {
                if let Some(u) = text(url) {
                    if !trackers.contains(&u) {
                        trackers.push(u);
                    }
                }
            }
        }
        m.trackers = trackers;
        Ok(m)
    }

    /// Parses and checks a bare info dictionary (as fetched from peers by BEP 9).
    pub fn from_info(info_raw: &[u8]) -> Result<Metainfo, BadTorrent> {
        let info = bencode::decode(info_raw).map_err(|e| BadTorrent(format!("info: {e}")))?;
        if !matches!(info, Value::Dict(_)) {
            return bad("info is not a dictionary");
        }
        let name_raw = info
            .get("name")
            .and_then(Value::as_bytes)
            .ok_or_else(|| BadTorrent("info has no name".into()))?;
        let name = check_component(name_raw).map_err(|e| BadTorrent(format!("name: {e}")))?;
        let piece_length = int(info.get("piece length"), "piece length")?;
        if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
            return bad(format!(
                "piece length {piece_length} is outside 1 byte..=64 MiB"
            ));
        }
        let hashes = info
            .get("pieces")
            .and_then(Value::as_bytes)
            .ok_or_else(|| BadTorrent("info has no pieces".into()))?;
        if hashes.len() % 20 != 0 {
            return bad(format!(
                "pieces is {} bytes, not a multiple of 20",
                hashes.len()
            ));
        }
        let pieces: Vec<PieceHash> = hashes
            .chunks_exact(20)
            .map(|c| PieceHash(c.try_into().expect("20 bytes")))
            .collect();
        let single_file = info.get("files").is_none();
        let mut files = Vec::new();
        let mut offset = 0u64;
        if single_file {
            let length = int(info.get("length"), "length")?;
            files.push(MetaFile {
                path: vec![name.clone()],
                length,
                offset,
                pad: false,
            });
            offset = length;
        } else {
            let list = info
                .get("files")
                .and_then(Value::as_list)
                .ok_or_else(|| BadTorrent("files is not a list".into()))?;
            if list.is_empty() {
                return bad("files is empty");
            }
            for (i, f) in list.iter().enumerate() {
                let length = int(f.get("length"), &format!("files[{i}].length"))?;
                let comps = f
                    .get("path")
                    .and_then(Value::as_list)
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| BadTorrent(format!("files[{i}].path is missing or empty")))?;
                let path = comps
                    .iter()
                    .map(|c| {
                        c.as_bytes()
                            .ok_or_else(|| BadTorrent(format!("files[{i}].path has a non-string")))
                            .and_then(check_component)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| BadTorrent(format!("files[{i}].path: {e}")))?;
                let attr = f.get("attr").and_then(Value::as_bytes).unwrap_or_default();
                if attr.contains(&b'l') {
                    return bad(format!(
                        "files[{i}] is a symlink (BEP 47), which cas does not take"
                    ));
                }
                let pad = attr.contains(&b'p');
                files.push(MetaFile {
                    path,
                    length,
                    offset,
                    pad,
                });
                offset = offset
                    .checked_add(length)
                    .ok_or_else(|| BadTorrent("total length overflows".into()))?;
            }
        }
        let length = offset;
        if length == 0 {
            return bad("the torrent holds no data");
        }
        check_distinct(&files)?;
        let expected = length.div_ceil(piece_length);
        if expected != pieces.len() as u64 {
            return bad(format!(
                "{} piece hashes for {length} bytes in pieces of {piece_length} (expected {expected})",
                pieces.len()
            ));
        }
        check_hybrid(&info, &name, single_file, &files)?;
        let private = info.get("private").and_then(Value::as_int) == Some(1);
        Ok(Metainfo {
            info_hash: InfoHash(Sha1::digest(info_raw).into()),
            name,
            piece_length: piece_length as u32,
            pieces,
            files,
            single_file,
            length,
            private,
            trackers: Vec::new(),
            info: info_raw.to_vec(),
        })
    }

    /// Length of piece `i`.
    pub fn piece_len(&self, i: usize) -> u64 {
        let start = i as u64 * u64::from(self.piece_length);
        (self.length - start).min(self.piece_length.into())
    }

    /// Where piece `i` ends in BEP 47 pad files: the length of its data before them,
    /// when it has some data and nothing but padding after it (the last piece of a
    /// padded file). Such a piece is that data followed by zeros.
    pub fn data_before_pad(&self, i: usize) -> Option<u64> {
        let start = i as u64 * u64::from(self.piece_length);
        let end = start + self.piece_len(i);
        let mut data_end = None;
        for f in &self.files {
            let (fs, fe) = (f.offset, f.offset + f.length);
            if f.length == 0 || fe <= start || fs >= end {
                continue;
            }
            if f.pad {
                data_end.get_or_insert(fs.max(start));
            } else {
                data_end = None; // data after a pad file: not a padded tail
            }
        }
        data_end.filter(|&e| e > start).map(|e| e - start)
    }

    /// A minimal .torrent around the info dictionary, with the trackers.
    pub fn to_torrent(&self) -> Vec<u8> {
        let mut out = b"d".to_vec();
        if let Some(first) = self.trackers.first() {
            out.extend(Value::str("announce").encode());
            out.extend(Value::str(first).encode());
            out.extend(Value::str("announce-list").encode());
            let tiers = self
                .trackers
                .iter()
                .map(|t| Value::List(vec![Value::str(t)]))
                .collect();
            out.extend(Value::List(tiers).encode());
        }
        out.extend(b"4:info");
        out.extend(&self.info);
        out.push(b'e');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torrent(files: &str) -> Vec<u8> {
        format!("d4:infod5:files{files}4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee")
            .into_bytes()
    }

    #[test]
    fn a_magnet_carries_a_lone_announce() {
        let t = b"d8:announce25:http://t.example/announce4:infod6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        let m = Metainfo::parse(t).unwrap().magnet();
        assert!(
            m.ends_with("&dn=x&tr=http%3A%2F%2Ft.example%2Fannounce"),
            "{m}"
        );
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for path in ["l2:..1:ae", "l1:/e", "l0:e", "le", "l3:a/be", "l1:.e"] {
            let t = torrent(&format!("ld6:lengthi5e4:path{path}ee"));
            let err = Metainfo::parse(&t).unwrap_err().to_string();
            assert!(err.contains("files[0].path"), "{path}: {err}");
        }
        let ok = Metainfo::parse(&torrent("ld6:lengthi5e4:pathl3:dir1:aeee")).unwrap();
        assert_eq!(ok.files[0].path, ["dir", "a"]);
    }

    #[test]
    fn piece_count_must_match_length() {
        let t = torrent("ld6:lengthi16385e4:pathl1:aeee");
        let err = Metainfo::parse(&t).unwrap_err().to_string();
        assert!(err.contains("expected 2"), "{err}");
    }
}
