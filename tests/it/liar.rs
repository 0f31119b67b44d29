//! A peer that lies on purpose: it claims every piece and answers every request with
//! wrong bytes. No real client does that, so it is a small in-process peer speaking
//! just enough of the BitTorrent wire protocol (BEP 3).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;

/// Serves garbage for `info_hash` to every connection; counts bytes sent.
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

fn lie(
    mut s: TcpStream,
    info_hash: [u8; 20],
    pieces: usize,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)?;
    if hs[28..48] != info_hash {
        return Ok(());
    }
    let mut ours = vec![19u8];
    ours.extend_from_slice(b"BitTorrent protocol");
    ours.extend_from_slice(&[0; 8]);
    ours.extend_from_slice(&info_hash);
    ours.extend_from_slice(b"-LI0001-liarliarliar");
    s.write_all(&ours)?;
    let mut bitfield = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bitfield[i / 8] |= 0x80 >> (i % 8);
    }
    send_msg(&mut s, 5, &bitfield)?;
    send_msg(&mut s, 1, &[])?; // unchoke
    loop {
        let msg = read_msg(&mut s)?;
        if msg.first() == Some(&6) && msg.len() == 13 {
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (s2, c2) = (sent.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                c2.fetch_add(1, Ordering::Relaxed);
                let s3 = s2.clone();
                std::thread::spawn(move || lie(conn, info_hash, pieces, &s3));
            }
        });
        Liar {
            port,
            sent,
            connections,
        }
    }
}

fn info_hash_of(torrent: &[u8]) -> [u8; 20] {
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
