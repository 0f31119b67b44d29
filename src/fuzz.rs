//! Fuzzing of every decoder that takes outside bytes, on stable Rust: a mutation fuzzer
//! (seed corpus, random edits, splices, bencode-aware tricks) run as unit tests.
//!
//! Targets: bencode, .torrent files and bare info dictionaries, magnet links (parsed by
//! librqbit), manifests, pack record headers, catalog records, path components, signed
//! updates and sync datagrams. Each
//! input runs under `catch_unwind` on a thread whose allocations are capped (a
//! [`Capped`] global allocator refuses any single allocation over [`MAX_ALLOC`], which
//! aborts the run), and an input that takes over a second is a failure (a hang).
//! Decoded values are checked too: a manifest or a record decodes only to something
//! that encodes back to the same bytes, and a torrent only to clean relative paths.
//!
//! `cargo test --lib fuzz` runs each target for a few seconds; `tests/fuzz.sh` runs
//! them for as long as asked (`CAS_FUZZ_SECONDS` per target).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The largest single allocation a decoder may make for one input.
const MAX_ALLOC: usize = 256 << 20;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, refusing huge allocations on fuzzing threads.
struct Capped;

// SAFETY: forwards to the system allocator; only refuses some requests.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC && ARMED.with(Cell::get) {
            eprintln!("fuzz: an allocation of {} bytes", layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC && ARMED.with(Cell::get) {
            eprintln!("fuzz: a reallocation to {new_size} bytes");
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

fn seconds() -> u64 {
    std::env::var("CAS_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// Byte strings a decoder should find interesting.
const TOKENS: &[&[u8]] = &[
    b"d",
    b"e",
    b"l",
    b"i",
    b"i-1e",
    b"i0e",
    b"i-0e",
    b"i99999999999999999999e",
    b"0:",
    b"1:",
    b"4294967296:",
    b"99999999999999999999:",
    b"4:info",
    b"5:files",
    b"4:path",
    b"6:length",
    b"12:piece length",
    b"6:pieces",
    b"4:name",
    b"2:..",
    b"1:/",
    b"0:",
    b"9:file tree",
    b"12:meta version",
    b"4:attr",
    b"1:p",
    b"1:l",
    b"CASTREE\x01",
    b"CASTORR\x01",
    b"CASTREC\x01",
    b"\xff\xff\xff\xff\x0f",
    b"magnet:?xt=urn:btih:",
    b"&tr=",
    b"&dn=",
    b"%",
    b"%zz",
    b"&so=0-99999999",
];

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = if corpus.is_empty() || rng.gen_ratio(1, 20) {
        (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect()
    } else {
        corpus[rng.gen_range(0..corpus.len())].clone()
    };
    for _ in 0..rng.gen_range(1..8) {
        let at = if v.is_empty() {
            0
        } else {
            rng.gen_range(0..=v.len())
        };
        match rng.gen_range(0..8) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            2 => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if at < v.len() => {
                let end = rng.gen_range(at..=v.len().min(at + 64));
                v.drain(at..end);
            }
            4 if at < v.len() => {
                let end = rng.gen_range(at..=v.len().min(at + 64));
                let copy: Vec<u8> = v[at..end].to_vec();
                v.splice(at..at, copy);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if !other.is_empty() {
                    let s = rng.gen_range(0..other.len());
                    let e = rng.gen_range(s..=other.len().min(s + 256));
                    v.splice(at..at, other[s..e].iter().copied());
                }
            }
            6 => {
                // Deep nesting.
                let depth = rng.gen_range(1..200);
                let open = if rng.gen() { b'l' } else { b'd' };
                v.splice(at..at, std::iter::repeat_n(open, depth));
            }
            _ => v.truncate(at),
        }
    }
    v
}

/// Runs `target` on mutated inputs for the configured time; panics on the first
/// input that panics it or takes over a second.
fn fuzz(name: &str, corpus: Vec<Vec<u8>>, target: fn(&[u8])) {
    let seed = std::env::var("CAS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let mut runs = 0u64;
    ARMED.with(|a| a.set(true));
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &corpus);
        let start = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| target(&input)));
        let took = start.elapsed();
        if r.is_err() || took > Duration::from_secs(1) {
            ARMED.with(|a| a.set(false));
            let path = std::env::temp_dir().join(format!("cas-fuzz-{name}-{seed}.bin"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "{name}: input {} ({} bytes, saved to {}) {} (seed {seed})",
                runs,
                input.len(),
                path.display(),
                if r.is_err() {
                    "panicked".to_string()
                } else {
                    format!("took {took:?}")
                }
            );
        }
        runs += 1;
    }
    ARMED.with(|a| a.set(false));
    eprintln!(
        "fuzz {name}: {runs} inputs in {} s, seed {seed}, 0 failures",
        seconds()
    );
}

fn torrent_corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/libtorrent-test-torrents");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    use crate::meta::torrent::{metainfo, single_file_info, Publish};
    let publish = Publish {
        private: true,
        trackers: vec!["http://t.example/announce".into()],
    };
    let info = single_file_info(
        "a.bin",
        40_000,
        16384,
        &[crate::PieceHash([7; 20]); 3],
        &publish,
    );
    out.push(metainfo(info, &publish));
    out
}

fn clean(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\', '\0'])
}

#[test]
fn fuzz_bencode() {
    fuzz("bencode", torrent_corpus(), |b| {
        if let Ok(v) = crate::meta::bencode::decode(b) {
            // What decodes re-encodes to a canonical form that decodes the same.
            let again =
                crate::meta::bencode::decode(&v.encode()).expect("re-encoded bencode decodes");
            assert!(again == v);
        }
    });
}

#[test]
fn fuzz_torrent() {
    fuzz("torrent", torrent_corpus(), |b| {
        if let Ok(m) = crate::meta::parse::Metainfo::parse(b) {
            for f in &m.files {
                assert!(f.path.iter().all(|c| clean(c)), "{:?}", f.path);
            }
            assert_eq!(m.files.iter().map(|f| f.length).sum::<u64>(), m.length);
            assert_eq!(
                m.length.div_ceil(m.piece_length.into()),
                m.pieces.len() as u64
            );
            let _ = crate::meta::parse::Metainfo::parse(&m.to_torrent())
                .expect("re-made torrent parses");
        }
        let _ = crate::meta::parse::Metainfo::from_info(b);
    });
}

#[test]
fn fuzz_magnet() {
    let corpus = vec![
        b"magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=x&tr=http%3A%2F%2Ft%2Fa".to_vec(),
        b"magnet:?xt=urn:btmh:1220aabbccddeeff00112233445566778899aabbccddeeff0011223344556677&so=0,2-4".to_vec(),
    ];
    fuzz("magnet", corpus, |b| {
        // What `cas get` hands to librqbit: the link as made safe.
        if let Ok(s) = std::str::from_utf8(b) {
            if let Ok(safe) = crate::engine::safe_magnet(s) {
                let _ = librqbit_core::magnet::Magnet::parse(&safe);
            }
        }
    });
}

#[test]
fn fuzz_manifest() {
    use crate::manifest::{Entry, EntryKind, Manifest};
    let m = Manifest {
        entries: vec![
            Entry {
                path: b"d".to_vec(),
                mode: 0o755,
                mtime_secs: 1,
                mtime_nanos: 2,
                kind: EntryKind::Dir,
            },
            Entry {
                path: b"d/f".to_vec(),
                mode: 0o644,
                mtime_secs: -5,
                mtime_nanos: 0,
                kind: EntryKind::File {
                    size: 9,
                    content: crate::ContentId([1; 32]),
                    info_hash: Some(crate::InfoHash([2; 20])),
                },
            },
            Entry {
                path: b"l".to_vec(),
                mode: 0o777,
                mtime_secs: 0,
                mtime_nanos: 0,
                kind: EntryKind::Symlink {
                    target: b"../x".to_vec(),
                },
            },
        ],
    };
    fuzz("manifest", vec![m.encode()], |b| {
        if let Ok(m) = Manifest::decode(b) {
            assert!(
                m.encode() == b,
                "a manifest decodes only from its canonical bytes"
            );
            for e in &m.entries {
                let p = std::str::from_utf8(&e.path).expect("paths are UTF-8");
                let ok = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.contains('\0');
                assert!(p.split('/').all(ok), "{p:?}");
            }
        }
    });
}

#[test]
fn fuzz_records() {
    use crate::catalog::{
        decode, encode, TorrentKind, TorrentRecord, TreeRecord, TORRENT_MAGIC, TREE_MAGIC,
    };
    use crate::chunks::chunk::{Collision, Digests};
    use crate::chunks::pack::{RecordHeader, RECORD_HEADER_LEN};
    let header = RecordHeader {
        digests: Digests {
            id: crate::ChunkId([3; 32]),
            sha1: crate::PieceHash([4; 20]),
            collision: Collision::Clean,
        },
        len: 1000,
        stored: 10,
    };
    let torrent = TorrentRecord {
        kind: TorrentKind::File {
            content: crate::ContentId([5; 32]),
        },
        length: 70_000,
        piece_length: 65536,
        pieces: vec![crate::ChunkId([6; 32]); 2],
        metainfo: b"d4:infod4:name1:aee".to_vec(),
    };
    let tree = TreeRecord {
        manifest: crate::InfoHash([7; 20]),
        directory: None,
        name: "t".into(),
    };
    let corpus = vec![
        header.encode().to_vec(),
        encode(TORRENT_MAGIC, &torrent),
        encode(TREE_MAGIC, &tree),
    ];
    fuzz("records", corpus, |b| {
        let mut h = [0u8; RECORD_HEADER_LEN];
        let n = b.len().min(RECORD_HEADER_LEN);
        h[..n].copy_from_slice(&b[..n]);
        // Half the time, with a right checksum, to get past it.
        if b.first().is_some_and(|x| x & 1 == 1) {
            let crc = crc32fast::hash(&h[..72]);
            h[72..76].copy_from_slice(&crc.to_le_bytes());
        }
        if let Ok(r) = RecordHeader::decode(&h) {
            assert!(r.stored <= r.len);
            assert_eq!(r.encode(), h);
        }
        let p = Path::new("fuzz");
        if let Ok(t) = decode::<TorrentRecord>(TORRENT_MAGIC, b, p) {
            // Whatever decodes survives a round trip unchanged.
            let again: TorrentRecord = decode(TORRENT_MAGIC, &encode(TORRENT_MAGIC, &t), p)
                .expect("an encoded record decodes");
            assert!(encode(TORRENT_MAGIC, &again) == encode(TORRENT_MAGIC, &t));
        }
        let _ = decode::<TreeRecord>(TREE_MAGIC, b, p);
    });
}

#[test]
fn fuzz_path_components() {
    fuzz("paths", TOKENS.iter().map(|t| t.to_vec()).collect(), |b| {
        if let Ok(c) = crate::meta::parse::check_component(b) {
            assert!(clean(&c), "{c:?}");
        }
    });
}

#[test]
fn fuzz_sync() {
    use crate::channel::{SecretKey, SignedUpdate, Update};
    use crate::sync::wire::Message;
    let key = SecretKey::generate();
    let update = SignedUpdate::sign(
        Update {
            channel: key.public(),
            seq: 300,
            tree: crate::TreeId([1; 32]),
            manifest: crate::InfoHash([2; 20]),
            parent: Some(crate::TreeId([3; 32])),
            node: "node-a".into(),
            time: 1_800_000_000,
        },
        &key,
    );
    let corpus = vec![
        update.encode(),
        crate::sync::wire::update_datagram(&update),
        Message::Query {
            channel: key.public(),
            seq: 7,
            tree: [9; 32],
        }
        .encode(),
    ];
    fuzz("sync", corpus, |b| {
        if let Ok(u) = SignedUpdate::decode(b) {
            let _ = u.verify();
            assert_eq!(SignedUpdate::decode(&u.encode()).ok(), Some(u));
        }
        if let Some(m) = Message::decode(b) {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
    });
}
