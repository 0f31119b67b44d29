//! Peers that lie on purpose: one answers every request with wrong bytes, one sends
//! blocks nobody asked for, one claims pieces it never sends, and a leecher floods
//! `cas serve` with requests. No real client does that, so these are small in-process
//! peers speaking just enough of the BitTorrent wire protocol (BEP 3).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;

/// How a [`Liar`] lies.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers every request with wrong bytes.
    WrongData,
    /// Sends wrong blocks that were never requested, and answers nothing.
    Unrequested,
    /// Claims every piece, unchokes, and never sends a byte.
    Withhold,
}

/// Lies about `info_hash` to every connection; counts bytes sent.
struct Liar {
    port: u16,
    sent: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

fn read_msg(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return Err(std::io::Error::other("message too long"));
    }
    let mut msg = vec![0; len];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

fn send_msg(s: &mut TcpStream, id: u8, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(&(payload.len() as u32 + 1).to_be_bytes())?;
    s.write_all(&[id])?;
    s.write_all(payload)
}

fn handshake(s: &mut TcpStream, info_hash: [u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut ours = vec![19u8];
    ours.extend_from_slice(b"BitTorrent protocol");
    ours.extend_from_slice(&[0; 8]);
    ours.extend_from_slice(&info_hash);
    ours.extend_from_slice(peer_id);
    let _ = s.write_all(&ours);
    ours
}

fn lie(
    mut s: TcpStream,
    info_hash: [u8; 20],
    pieces: usize,
    mode: Mode,
    sent: &AtomicU64,
    connections: &AtomicU64,
) -> std::io::Result<()> {
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)?;
    // A plaintext peer: an encrypted handshake (cas tries one first) is hung up on,
    // and only handshakes for its torrent count as connections.
    if &hs[..20] != b"\x13BitTorrent protocol" || hs[28..48] != info_hash {
        return Ok(());
    }
    connections.fetch_add(1, Ordering::Relaxed);
    handshake(&mut s, info_hash, b"-LI0001-liarliarliar");
    let mut bitfield = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bitfield[i / 8] |= 0x80 >> (i % 8);
    }
    send_msg(&mut s, 5, &bitfield)?;
    send_msg(&mut s, 1, &[])?; // unchoke
    if mode == Mode::Unrequested {
        // Whole pieces of garbage, block by block, never asked for.
        for p in 0..pieces as u32 {
            for b in 0..(16u32 << 10) / (4 << 10) {
                let mut m = p.to_be_bytes().to_vec();
                m.extend((b * (4 << 10)).to_be_bytes());
                m.extend(std::iter::repeat_n(0xCD, 4 << 10));
                send_msg(&mut s, 7, &m)?;
                sent.fetch_add(4 << 10, Ordering::Relaxed);
            }
        }
    }
    loop {
        let msg = read_msg(&mut s)?;
        if mode == Mode::WrongData && msg.first() == Some(&6) && msg.len() == 13 {
            let len = u32::from_be_bytes([msg[9], msg[10], msg[11], msg[12]]) as usize;
            let mut piece = msg[1..9].to_vec();
            piece.extend(std::iter::repeat_n(0xAB, len));
            send_msg(&mut s, 7, &piece)?;
            sent.fetch_add(len as u64, Ordering::Relaxed);
        }
    }
}

impl Liar {
    fn start(info_hash: [u8; 20], pieces: usize) -> Liar {
        Liar::start_as(info_hash, pieces, Mode::WrongData)
    }

    fn start_as(info_hash: [u8; 20], pieces: usize, mode: Mode) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (s2, c2) = (sent.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s3, c3) = (s2.clone(), c2.clone());
                std::thread::spawn(move || lie(conn, info_hash, pieces, mode, &s3, &c3));
            }
        });
        Liar {
            port,
            sent,
            connections,
        }
    }
}

pub fn info_hash_of(torrent: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    let start = torrent.windows(6).position(|w| w == b"4:info").unwrap() + 6;
    Sha1::digest(&torrent[start..torrent.len() - 1]).into()
}

#[test]
fn a_peer_that_sends_wrong_data_gets_nothing_into_the_store() {
    let seeder = Env::with_piece_length("16K");
    let data = random_bytes(9, 400_000);
    write(&seeder.path("src/f.bin"), &data);
    seeder.import(&seeder.path("src"), "src");
    let t = seeder.path("f.torrent");
    seeder.ok(&["torrent", "src:f.bin", "-o", t.to_str().unwrap()]);
    let torrent = std::fs::read(&t).unwrap();
    let liar = Liar::start(info_hash_of(&torrent), 400_000usize.div_ceil(16 << 10));

    // Only the liar: nothing completes, nothing is stored.
    let leech = Env::with_piece_length("16K");
    let liar_addr = format!("127.0.0.1:{}", liar.port);
    let err = leech.fails(&[
        "get",
        t.to_str().unwrap(),
        "--peer",
        &liar_addr,
        "--timeout",
        "8",
    ]);
    assert!(err.contains("timed out"), "{err}");
    assert!(
        liar.sent.load(Ordering::Relaxed) > 0,
        "the liar was never asked for data"
    );
    // Dropped at its first bad piece and not called again at once: librqbit retries
    // a failed peer only after an exponential back-off.
    let tries = liar.connections.load(Ordering::Relaxed);
    assert!(
        (1..=2).contains(&tries),
        "the liar was connected {tries} times in 8 s"
    );
    let stats = leech.json(&["stats"]);
    assert_eq!(stats["chunks"], 0, "bad bytes were stored: {stats}");

    // The liar and an honest seeder: the download completes with the right bytes only.
    let serve = crate::serve::Serve::start(&seeder);
    let honest = format!("127.0.0.1:{}", serve.port);
    let r = leech.json(&[
        "get",
        t.to_str().unwrap(),
        "--peer",
        &liar_addr,
        "--peer",
        &honest,
        "--timeout",
        "60",
        "--export",
        leech.path("out").to_str().unwrap(),
    ]);
    assert_eq!(r["bytes_from_wire"], 400_000, "{r}");
    let name = blake3::hash(&data).to_hex().to_string();
    assert_eq!(std::fs::read(leech.path("out").join(name)).unwrap(), data);
    let fsck = leech.run(&["fsck"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    eprintln!(
        "liar: {} connections, {} bytes sent; pieces rejected in the last run: {}",
        liar.connections.load(Ordering::Relaxed),
        liar.sent.load(Ordering::Relaxed),
        r["pieces_rejected"]
    );
}

/// The seeder's store, its file torrent, and the file's bytes.
fn seeded(seed: u64) -> (Env, std::path::PathBuf, Vec<u8>) {
    let seeder = Env::with_piece_length("16K");
    let data = random_bytes(seed, 400_000);
    write(&seeder.path("src/f.bin"), &data);
    seeder.import(&seeder.path("src"), "src");
    let t = seeder.path("f.torrent");
    seeder.ok(&["torrent", "src:f.bin", "-o", t.to_str().unwrap()]);
    (seeder, t, data)
}

/// A liar of `mode` beside an honest `cas serve`: the download completes with the
/// right bytes, and the leecher's store holds nothing else.
fn honest_bytes_win_over(mode: Mode) {
    let (seeder, t, data) = seeded(10);
    let torrent = std::fs::read(&t).unwrap();
    let liar = Liar::start_as(
        info_hash_of(&torrent),
        400_000usize.div_ceil(16 << 10),
        mode,
    );
    let serve = crate::serve::Serve::start(&seeder);
    let leech = Env::with_piece_length("16K");
    let out = leech.path("out");
    let r = leech.json(&[
        "get",
        t.to_str().unwrap(),
        "--peer",
        &format!("127.0.0.1:{}", liar.port),
        "--peer",
        &format!("127.0.0.1:{}", serve.port),
        "--timeout",
        "60",
        "--export",
        out.to_str().unwrap(),
    ]);
    let name = blake3::hash(&data).to_hex().to_string();
    assert!(std::fs::read(out.join(name)).unwrap() == data);
    assert!(
        liar.connections.load(Ordering::Relaxed) > 0,
        "the liar was never met"
    );
    let stats = leech.json(&["stats"]);
    assert_eq!(
        stats["chunks"], 25,
        "more than the file's 25 pieces stored: {stats} {r}"
    );
    let fsck = leech.run(&["fsck"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn a_peer_that_sends_blocks_never_asked_for_gets_nothing_into_the_store() {
    honest_bytes_win_over(Mode::Unrequested);
}

#[test]
fn a_peer_that_claims_pieces_it_never_sends_does_not_stall_a_download() {
    honest_bytes_win_over(Mode::Withhold);
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A leecher that asks `cas serve` for every block of every piece, over and over,
/// without reading what it is sent; dropped, it connects again, until `stop`.
fn flood(port: u16, info_hash: [u8; 20], pieces: u32, requests: &AtomicU64, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        handshake(&mut s, info_hash, b"-FL0001-floodfloodfl");
        let _ = send_msg(&mut s, 2, &[]); // interested
        let mut batch = Vec::new();
        'conn: for _ in 0..200 {
            for p in 0..pieces {
                for b in 0..(16u32 << 10) / (4 << 10) {
                    batch.clear();
                    batch.extend(13u32.to_be_bytes());
                    batch.push(6);
                    batch.extend(p.to_be_bytes());
                    batch.extend((b * (4 << 10)).to_be_bytes());
                    batch.extend((4u32 << 10).to_be_bytes());
                    if stop.load(Ordering::Relaxed) || s.write_all(&batch).is_err() {
                        break 'conn;
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[test]
fn a_flood_of_requests_neither_stops_serving_nor_grows_memory() {
    let (seeder, t, data) = seeded(11);
    let torrent = std::fs::read(&t).unwrap();
    let ih = info_hash_of(&torrent);
    let serve = crate::serve::Serve::start(&seeder);
    let pid = serve.pid();
    let before = vm_rss_kib(pid);
    let requests = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..4 {
        let (r, st) = (requests.clone(), stop.clone());
        let port = serve.port;
        flooders.push(std::thread::spawn(move || flood(port, ih, 25, &r, &st)));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Meanwhile an honest client still gets the file.
    let save = seeder.path("lt");
    let r = crate::serve::lt_download(&t, &save, serve.port);
    assert_eq!(r["seeding"], true, "{r}");
    let name = blake3::hash(&data).to_hex().to_string();
    assert!(std::fs::read(save.join(name)).unwrap() == data);
    let after = vm_rss_kib(pid);
    let sent = requests.load(Ordering::Relaxed);
    eprintln!("flood: {sent} requests; cas serve RSS {before} KiB before, {after} KiB during");
    // 25 pieces are 100 blocks: each asked for ten times at least. (The flooders read
    // nothing back, so how much they get out before cas drops them depends on socket
    // buffers; dropped, they connect again.)
    assert!(sent >= 1000, "the flood sent only {sent} requests");
    assert!(
        after < before + (256 << 10),
        "cas serve grew from {before} KiB to {after} KiB under a request flood"
    );
    stop.store(true, Ordering::Relaxed);
    drop(serve);
    for f in flooders {
        let _ = f.join();
    }
}
