//! The listener of `cas serve`: one failed or idle incoming connection never keeps the
//! handshakes of the others unanswered.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::Serve;

/// A store seeding one small file; returns it with the file torrent's info-hash.
fn seeding_env() -> (Env, [u8; 20]) {
    let env = Env::with_piece_length("16K");
    let src = env.path("data");
    write(&src.join("f.bin"), &random_bytes(91, 64 << 10));
    let r = env.import(&src, "data");
    let ih = r["files"][0]["info_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no info-hash: {r}"));
    let ih: [u8; 20] = hex::decode(ih).unwrap().try_into().unwrap();
    (env, ih)
}

/// A BitTorrent handshake for `info_hash`, no extensions.
fn handshake(info_hash: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(b"-XX0001-listenertest");
    h
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect to cas serve")
}

/// Sends a handshake on `s` and requires cas's own, for the same torrent, within `within`.
fn assert_answered(s: &mut TcpStream, info_hash: &[u8; 20], within: Duration) {
    s.write_all(&handshake(info_hash)).unwrap();
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut reply = [0u8; 68];
    let mut got = 0;
    while got < reply.len() {
        match s.read(&mut reply[got..]) {
            Ok(0) => panic!("cas closed the connection after {got} bytes of its handshake"),
            Ok(n) => got += n,
            Err(e) => panic!(
                "no handshake from cas within {within:?} ({got} bytes, {:?}): {e}",
                started.elapsed()
            ),
        }
    }
    assert_eq!(&reply[..20], b"\x13BitTorrent protocol");
    assert_eq!(
        &reply[28..48],
        info_hash,
        "cas answered for another torrent"
    );
}

#[test]
fn a_garbage_connection_does_not_leave_other_handshakes_unanswered() {
    let (env, ih) = seeding_env();
    let serve = Serve::start(&env);

    // A is accepted and says nothing yet.
    let mut a = connect(serve.port);
    std::thread::sleep(Duration::from_millis(300));
    // B sends garbage and goes away: its handshake check fails.
    let mut b = connect(serve.port);
    std::thread::sleep(Duration::from_millis(300));
    b.write_all(&[0xcf; 68]).unwrap();
    let _ = b.shutdown(Shutdown::Both);
    drop(b);
    std::thread::sleep(Duration::from_millis(500));

    // No connection is accepted after B: A's handshake must be read all the same.
    assert_answered(&mut a, &ih, Duration::from_secs(4));
}

#[test]
fn idle_connections_beyond_the_pending_limit_do_not_keep_a_new_one_unread() {
    let (env, ih) = seeding_env();
    let serve = Serve::start(&env);

    // More idle connections than librqbit's limit of pending handshakes (256): each
    // would be given 10 s to send its handshake.
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(serve.port)).collect();
    std::thread::sleep(Duration::from_millis(500));

    let mut a = connect(serve.port);
    assert_answered(&mut a, &ih, Duration::from_secs(4));
    drop(idle);
}

/// BEP 10: cas's extended handshake names the port it listens on (`p`), so that a
/// peer it dialled, which sees an ephemeral port, can dial it back and tell others;
/// and how many requests it takes queued (`reqq`).
#[test]
fn the_extended_handshake_names_the_listen_port_and_the_request_queue() {
    let (env, ih) = seeding_env();
    let serve = Serve::start(&env);
    let mut s = connect(serve.port);
    let mut hs = handshake(&ih);
    hs[20 + 5] |= 0x10; // the extension protocol
    s.write_all(&hs).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    assert_ne!(theirs[20 + 5] & 0x10, 0, "cas takes the extension protocol");
    // Messages until the extended handshake (id 20, extended id 0).
    let ext = loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut msg).unwrap();
        if msg.len() >= 2 && msg[0] == 20 && msg[1] == 0 {
            break msg[2..].to_vec();
        }
    };
    let text = String::from_utf8_lossy(&ext);
    assert!(
        text.contains(&format!("1:pi{}e", serve.port)),
        "no p={} in {text}",
        serve.port
    );
    assert!(text.contains("4:reqqi"), "no reqq in {text}");
}
