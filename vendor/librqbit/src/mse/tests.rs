//! Both halves of the handshake against each other over an in-memory duplex.

use librqbit_core::hash_id::Id20;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    CRYPTO_PLAINTEXT, CRYPTO_RC4, EncryptionPolicy, MseError,
    handshake::{MAX_PAD, Pads, accept_padded, initiate_padded},
};
use crate::{
    type_aliases::{BoxAsyncReadVectored, BoxAsyncWrite},
    vectored_traits::AsyncReadVectoredIntoCompat,
};

fn info_hash() -> Id20 {
    Id20::new([7u8; 20])
}

fn pipe() -> (
    (BoxAsyncReadVectored, BoxAsyncWrite),
    (BoxAsyncReadVectored, BoxAsyncWrite),
) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    (
        (Box::new(ar.into_vectored_compat()), Box::new(aw)),
        (Box::new(br.into_vectored_compat()), Box::new(bw)),
    )
}

fn known(req2: &[u8; 20]) -> Option<Id20> {
    (super::req2_hash(&info_hash().0) == *req2).then_some(info_hash())
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| i.to_le_bytes()[0].wrapping_mul(31) ^ seed)
        .collect()
}

/// A handshake with these pads on both sides; then each side sends `len` bytes and
/// reads the other's. Returns (initiator's select, receiver's select).
async fn round_trip(
    provide: u32,
    policy: EncryptionPolicy,
    pads: Pads,
    len: usize,
) -> Result<(u32, u32), MseError> {
    let ((ar, aw), (br, bw)) = pipe();
    let ia = bytes(68, 1);
    let ih = info_hash();
    let initiator = initiate_padded(ar, aw, &ih, provide, &ia, pads);
    let receiver = accept_padded(br, bw, policy, known, pads);
    let (a, b) = tokio::join!(initiator, receiver);
    // The receiver's error first: the initiator only sees the connection end.
    let (b, a) = (b?, a?);
    assert_eq!(b.info_hash, Some(info_hash()));
    let (mut a_read, mut a_write, mut b_read, mut b_write) = (a.read, a.write, b.read, b.write);

    let (to_b, to_a) = (bytes(len, 2), bytes(len, 3));
    // Each side writes and reads at once: the duplex holds less than is sent.
    let a_sends = async {
        a_write.write_all(&to_b).await.unwrap();
        a_write.flush().await.unwrap();
    };
    let a_gets = async {
        let mut got = vec![0u8; len];
        a_read.read_exact(&mut got).await.unwrap();
        got
    };
    let b_sends = async {
        b_write.write_all(&to_a).await.unwrap();
        b_write.flush().await.unwrap();
    };
    let b_gets = async {
        let mut got_ia = vec![0u8; ia.len()];
        b_read.read_exact(&mut got_ia).await.unwrap();
        assert_eq!(got_ia, ia, "the initial payload comes first");
        let mut got = vec![0u8; len];
        b_read.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got_a, (), got_b) = tokio::join!(a_sends, a_gets, b_sends, b_gets);
    assert!(got_a == to_a, "what the receiver sent arrived");
    assert!(got_b == to_b, "what the initiator sent arrived");
    Ok((a.selected, b.selected))
}

const NO_PADS: Pads = Pads {
    after_key: 0,
    after_vc: 0,
};

#[tokio::test]
async fn rc4_round_trip() {
    // More than the duplex holds, and more than the writer enciphers ahead.
    let sel = round_trip(CRYPTO_RC4, EncryptionPolicy::Prefer, NO_PADS, 3 << 20).await;
    assert_eq!(sel.unwrap(), (CRYPTO_RC4, CRYPTO_RC4));
}

#[tokio::test]
async fn plaintext_round_trip() {
    let both = CRYPTO_PLAINTEXT | CRYPTO_RC4;
    let sel = round_trip(both, EncryptionPolicy::Prefer, NO_PADS, 1 << 20).await;
    assert_eq!(sel.unwrap(), (CRYPTO_PLAINTEXT, CRYPTO_PLAINTEXT));
}

#[tokio::test]
async fn require_selects_rc4_when_both_are_offered() {
    let both = CRYPTO_PLAINTEXT | CRYPTO_RC4;
    let sel = round_trip(both, EncryptionPolicy::Require, NO_PADS, 1 << 16).await;
    assert_eq!(sel.unwrap(), (CRYPTO_RC4, CRYPTO_RC4));
}

#[tokio::test]
async fn require_refuses_a_peer_that_offers_plaintext_only() {
    let r = round_trip(CRYPTO_PLAINTEXT, EncryptionPolicy::Require, NO_PADS, 0).await;
    assert!(
        matches!(r, Err(MseError::NoCommonMethod { provided: 1 })),
        "{r:?}"
    );
}

#[tokio::test]
async fn the_longest_pads_are_taken() {
    let pads = Pads {
        after_key: MAX_PAD,
        after_vc: MAX_PAD,
    };
    for provide in [CRYPTO_RC4, CRYPTO_PLAINTEXT] {
        let sel = round_trip(provide, EncryptionPolicy::Prefer, pads, 1000).await;
        assert_eq!(sel.unwrap(), (provide, provide));
    }
}

#[tokio::test]
async fn a_pad_after_the_key_past_512_bytes_is_refused() {
    let pads = Pads {
        after_key: MAX_PAD + 1,
        after_vc: 0,
    };
    // The receiver meets PadA first.
    let r = round_trip(CRYPTO_RC4, EncryptionPolicy::Prefer, pads, 0).await;
    assert!(matches!(r, Err(MseError::NoReq1)), "{r:?}");
}

#[tokio::test]
async fn a_pad_after_the_verification_constant_past_512_bytes_is_refused() {
    let pads = Pads {
        after_key: 0,
        after_vc: MAX_PAD + 1,
    };
    let r = round_trip(CRYPTO_RC4, EncryptionPolicy::Prefer, pads, 0).await;
    assert!(matches!(r, Err(MseError::PadTooLong(513))), "{r:?}");
}

#[tokio::test]
async fn a_torrent_the_receiver_lacks_is_refused() {
    let ((ar, aw), (br, bw)) = pipe();
    let other = Id20::new([8u8; 20]);
    let initiator = initiate_padded(ar, aw, &other, CRYPTO_RC4, b"hs", NO_PADS);
    let receiver = async {
        let r = accept_padded(br, bw, EncryptionPolicy::Prefer, known, NO_PADS).await;
        // The receiver hangs up, as the session does.
        r.map(|_| ())
    };
    let (a, b) = tokio::join!(initiator, receiver);
    assert!(matches!(b, Err(MseError::UnknownTorrent)), "{b:?}");
    assert!(a.is_err(), "the initiator sees the connection end");
}

#[tokio::test]
async fn a_plaintext_handshake_passes_through_unless_encryption_is_required() {
    let hs = b"\x13BitTorrent protocol\0\0\0\0\0\x10\0\x05 and the rest";
    for policy in [EncryptionPolicy::Prefer, EncryptionPolicy::Require] {
        let ((_ar, mut aw), (br, bw)) = pipe();
        aw.write_all(hs).await.unwrap();
        let r = super::accept(br, bw, policy, known).await;
        match (policy, r) {
            (EncryptionPolicy::Prefer, Ok(mut acc)) => {
                assert_eq!(acc.info_hash, None);
                let mut got = vec![0u8; hs.len()];
                acc.read.read_exact(&mut got).await.unwrap();
                assert_eq!(&got[..], &hs[..]);
            }
            (EncryptionPolicy::Require, Err(MseError::PlaintextRefused)) => {}
            (p, r) => panic!("{p:?}: {:?}", r.map(|a| a.selected)),
        }
    }
}

#[test]
fn keys_agree_and_are_96_bytes() {
    let (a, b) = (
        super::crypto::KeyPair::generate(),
        super::crypto::KeyPair::generate(),
    );
    let sa = a.shared_secret(&b.public).unwrap();
    let sb = b.shared_secret(&a.public).unwrap();
    assert_eq!(sa, sb);
    let mut one = [0u8; 96];
    one[95] = 1;
    assert!(matches!(a.shared_secret(&one), Err(MseError::BadPublicKey)));
    assert!(matches!(
        a.shared_secret(&[0xff; 96]),
        Err(MseError::BadPublicKey)
    ));
}

/// Reads as uTP's reader does: fills the slices, then advances each past what it
/// filled.
struct Advancing(BoxAsyncReadVectored);

impl tokio::io::AsyncRead for Advancing {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl crate::vectored_traits::AsyncReadVectored for Advancing {
    fn poll_read_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        vec: &mut [std::io::IoSliceMut<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let inner = std::pin::Pin::new(&mut self.get_mut().0);
        let n = std::task::ready!(inner.poll_read_vectored(cx, vec))?;
        let mut left = n;
        for s in vec.iter_mut() {
            let k = left.min(s.len());
            s.advance(k);
            left -= k;
        }
        std::task::Poll::Ready(Ok(n))
    }
}

#[tokio::test]
async fn rc4_through_a_reader_that_advances_its_slices() {
    use crate::vectored_traits::AsyncReadVectoredExt;
    let ((ar, aw), (br, bw)) = pipe();
    let br: BoxAsyncReadVectored = Box::new(Advancing(br));
    let ih = info_hash();
    let initiator = initiate_padded(ar, aw, &ih, CRYPTO_RC4, b"", NO_PADS);
    let receiver = accept_padded(br, bw, EncryptionPolicy::Prefer, known, NO_PADS);
    let (a, b) = tokio::join!(initiator, receiver);
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    let sent = bytes(200_000, 9);
    let write = async {
        a.write.write_all(&sent).await.unwrap();
    };
    let read = async {
        let mut got = Vec::new();
        let (mut x, mut y) = ([0u8; 1000], [0u8; 777]);
        while got.len() < sent.len() {
            let mut vec = [
                std::io::IoSliceMut::new(&mut x),
                std::io::IoSliceMut::new(&mut y),
            ];
            let n = b.read.read_vectored(&mut vec).await.unwrap();
            assert!(n > 0);
            let in_x = n.min(x.len());
            got.extend_from_slice(&x[..in_x]);
            got.extend_from_slice(&y[..n - in_x]);
        }
        got
    };
    let ((), got) = tokio::join!(write, read);
    assert!(got == sent, "deciphered as sent");
}
