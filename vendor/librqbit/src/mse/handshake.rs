//! The two halves of the handshake: [`initiate`] (the side that dials) and
//! [`accept`] (the side that was dialled, which also tells a plaintext handshake
//! from an encrypted one).

use librqbit_core::hash_id::Id20;
use rc4::StreamCipher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    CRYPTO_PLAINTEXT, CRYPTO_RC4, EncryptionPolicy, MseError,
    crypto::{self, KEY_LEN, KeyPair},
    stream::{MseRead, MseWrite},
};
use crate::type_aliases::{BoxAsyncReadVectored, BoxAsyncWrite};

/// The longest padding (PadA, PadB, PadC, PadD) the spec allows.
pub(crate) const MAX_PAD: usize = 512;

/// Verification constant: 8 zero bytes.
const VC: [u8; 8] = [0; 8];

/// The first 20 bytes of every plaintext BitTorrent handshake.
const PLAINTEXT_START: &[u8; 20] = b"\x13BitTorrent protocol";

/// A connection's bytes as the handshake reads them: read in chunks, so what comes
/// after the handshake may be read with it; [`Incoming::rest`] gives that back.
pub(crate) struct Incoming<'a> {
    conn: &'a mut BoxAsyncReadVectored,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> Incoming<'a> {
    pub fn new(conn: &'a mut BoxAsyncReadVectored) -> Self {
        Self {
            conn,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    async fn read_more(&mut self) -> Result<(), MseError> {
        let mut chunk = [0u8; 4096];
        let n = self.conn.read(&mut chunk).await.map_err(MseError::Io)?;
        if n == 0 {
            return Err(MseError::Eof);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Waits until `n` bytes are available.
    async fn fill(&mut self, n: usize) -> Result<(), MseError> {
        while self.available().len() < n {
            self.read_more().await?;
        }
        Ok(())
    }

    /// The next `n` bytes, consumed.
    async fn take(&mut self, n: usize) -> Result<&mut [u8], MseError> {
        self.fill(n).await?;
        let start = self.pos;
        self.pos += n;
        Ok(&mut self.buf[start..start + n])
    }

    /// The next `n` bytes deciphered.
    async fn take_deciphered(
        &mut self,
        n: usize,
        cipher: &mut rc4::Rc4,
    ) -> Result<&mut [u8], MseError> {
        let bytes = self.take(n).await?;
        cipher.apply_keystream(bytes);
        Ok(bytes)
    }

    /// Skips at most `max_skip` bytes to just past `pattern`; `missing` if it is not
    /// there.
    async fn sync(
        &mut self,
        pattern: &[u8],
        max_skip: usize,
        missing: MseError,
    ) -> Result<(), MseError> {
        loop {
            let window = &self.available()[..self.available().len().min(max_skip + pattern.len())];
            if let Some(i) = window.windows(pattern.len()).position(|w| w == pattern) {
                self.pos += i + pattern.len();
                return Ok(());
            }
            if window.len() >= max_skip + pattern.len() {
                return Err(missing);
            }
            self.read_more().await?;
        }
    }

    /// What was read past the handshake.
    fn rest(self) -> Vec<u8> {
        let mut buf = self.buf;
        buf.drain(..self.pos);
        buf
    }
}

/// The padding lengths one side sends: after its public key (PadA or PadB, random),
/// and after its verification constant (PadC or PadD).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pads {
    pub after_key: usize,
    pub after_vc: usize,
}

impl Pads {
    /// PadA/PadB random; PadC/PadD zero-length, as every implementation sends them
    /// (the spec keeps them for extensions).
    fn usual() -> Self {
        Self {
            after_key: rand::random_range(0..=MAX_PAD),
            after_vc: 0,
        }
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut pad = vec![0u8; len];
    rand::fill(&mut pad[..]);
    pad
}

/// A pad length as its 2-byte field (tests send lengths past the limit).
fn pad_len_field(len: usize) -> [u8; 2] {
    u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes()
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn check_pad(len: u16) -> Result<usize, MseError> {
    if usize::from(len) > MAX_PAD {
        return Err(MseError::PadTooLong(len));
    }
    Ok(usize::from(len))
}

/// The initiator's half: `ia` (our BitTorrent handshake) goes in the initial
/// payload; `provide` is the `crypto_provide` bitfield.
pub(crate) async fn initiate(
    read: BoxAsyncReadVectored,
    write: BoxAsyncWrite,
    info_hash: &Id20,
    provide: u32,
    ia: &[u8],
) -> Result<Established, MseError> {
    initiate_padded(read, write, info_hash, provide, ia, Pads::usual()).await
}

pub(crate) async fn initiate_padded(
    mut read: BoxAsyncReadVectored,
    mut write: BoxAsyncWrite,
    info_hash: &Id20,
    provide: u32,
    ia: &[u8],
    pads: Pads,
) -> Result<Established, MseError> {
    let ia_len = u16::try_from(ia.len()).map_err(|_| MseError::PayloadTooLong(ia.len()))?;
    let skey = &info_hash.0;
    let keys = KeyPair::generate();
    let mut out = keys.public.to_vec();
    out.extend_from_slice(&random_bytes(pads.after_key));
    write.write_all(&out).await.map_err(MseError::Io)?;

    let mut incoming = Incoming::new(&mut read);
    let mut yb = [0u8; KEY_LEN];
    yb.copy_from_slice(incoming.take(KEY_LEN).await?);
    let secret = keys.shared_secret(&yb)?;
    let mut encrypt = crypto::cipher(b"keyA", &secret, skey);
    let mut decrypt = crypto::cipher(b"keyB", &secret, skey);

    let mut out = Vec::with_capacity(40 + 16 + ia.len());
    out.extend_from_slice(&crypto::hash(&[b"req1", &secret]));
    out.extend_from_slice(&crypto::xor20(
        &crypto::req2_hash(skey),
        &crypto::hash(&[b"req3", &secret]),
    ));
    let enciphered_from = out.len();
    out.extend_from_slice(&VC);
    out.extend_from_slice(&provide.to_be_bytes());
    out.extend_from_slice(&pad_len_field(pads.after_vc));
    out.extend_from_slice(&random_bytes(pads.after_vc));
    out.extend_from_slice(&ia_len.to_be_bytes());
    out.extend_from_slice(ia);
    encrypt.apply_keystream(&mut out[enciphered_from..]);
    write.write_all(&out).await.map_err(MseError::Io)?;

    // B's VC, enciphered, ends PadB.
    let mut vc = VC;
    decrypt.apply_keystream(&mut vc);
    incoming
        .sync(&vc, MAX_PAD, MseError::NoVerificationConstant)
        .await?;
    let fields = incoming.take_deciphered(6, &mut decrypt).await?;
    let selected = be_u32(&fields[..4]);
    let pad_len = check_pad(be_u16(&fields[4..]))?;
    if selected.count_ones() != 1 || selected & provide == 0 {
        return Err(MseError::BadSelect {
            selected,
            provided: provide,
        });
    }
    incoming.take_deciphered(pad_len, &mut decrypt).await?;

    let mut rest = incoming.rest();
    if selected == CRYPTO_RC4 {
        decrypt.apply_keystream(&mut rest);
        Ok(Established {
            read: Box::new(MseRead::new(read, rest, Some(decrypt))),
            write: Box::new(MseWrite::new(write, encrypt)),
            selected,
        })
    } else {
        Ok(Established {
            read: Box::new(MseRead::new(read, rest, None)),
            write,
            selected,
        })
    }
}

/// An encrypted handshake done: the streams, and the `crypto_select` of it.
pub(crate) struct Established {
    pub read: BoxAsyncReadVectored,
    pub write: BoxAsyncWrite,
    pub selected: u32,
}

/// A connection accepted under `policy`: its streams, with the peer's BitTorrent
/// handshake still to be read from `read`.
pub(crate) struct Accepted {
    pub read: BoxAsyncReadVectored,
    pub write: BoxAsyncWrite,
    /// The info-hash the encrypted handshake named (None for a plaintext one): the
    /// BitTorrent handshake that follows must name the same.
    pub info_hash: Option<Id20>,
    /// The `crypto_select` (0 for a plaintext handshake).
    pub selected: u32,
}

/// The receiver's half. A connection that starts as a plaintext BitTorrent
/// handshake is given back as it is (refused under [`EncryptionPolicy::Require`]);
/// any other is an encrypted handshake, whose torrent `lookup` finds from
/// HASH('req2', info-hash). Under [`EncryptionPolicy::Off`] nothing is read.
pub(crate) async fn accept(
    read: BoxAsyncReadVectored,
    write: BoxAsyncWrite,
    policy: EncryptionPolicy,
    lookup: impl FnOnce(&[u8; 20]) -> Option<Id20>,
) -> Result<Accepted, MseError> {
    accept_padded(read, write, policy, lookup, Pads::usual()).await
}

pub(crate) async fn accept_padded(
    mut read: BoxAsyncReadVectored,
    mut write: BoxAsyncWrite,
    policy: EncryptionPolicy,
    lookup: impl FnOnce(&[u8; 20]) -> Option<Id20>,
    pads: Pads,
) -> Result<Accepted, MseError> {
    if policy == EncryptionPolicy::Off {
        return Ok(Accepted {
            read,
            write,
            info_hash: None,
            selected: 0,
        });
    }
    let mut incoming = Incoming::new(&mut read);
    incoming.fill(PLAINTEXT_START.len()).await?;
    if incoming.available().starts_with(PLAINTEXT_START) {
        if policy == EncryptionPolicy::Require {
            return Err(MseError::PlaintextRefused);
        }
        let rest = incoming.rest();
        return Ok(Accepted {
            read: Box::new(MseRead::new(read, rest, None)),
            write,
            info_hash: None,
            selected: 0,
        });
    }

    let mut ya = [0u8; KEY_LEN];
    ya.copy_from_slice(incoming.take(KEY_LEN).await?);
    let keys = KeyPair::generate();
    let secret = keys.shared_secret(&ya)?;
    let mut out = keys.public.to_vec();
    out.extend_from_slice(&random_bytes(pads.after_key));
    write.write_all(&out).await.map_err(MseError::Io)?;

    incoming
        .sync(
            &crypto::hash(&[b"req1", &secret]),
            MAX_PAD,
            MseError::NoReq1,
        )
        .await?;
    let mut named = [0u8; 20];
    named.copy_from_slice(incoming.take(20).await?);
    let req2 = crypto::xor20(&named, &crypto::hash(&[b"req3", &secret]));
    let info_hash = lookup(&req2).ok_or(MseError::UnknownTorrent)?;
    let mut decrypt = crypto::cipher(b"keyA", &secret, &info_hash.0);
    let mut encrypt = crypto::cipher(b"keyB", &secret, &info_hash.0);

    let fields = incoming.take_deciphered(14, &mut decrypt).await?;
    if fields[..8] != VC {
        return Err(MseError::BadVerificationConstant);
    }
    let provided = be_u32(&fields[8..12]);
    let pad_len = check_pad(be_u16(&fields[12..]))?;
    incoming.take_deciphered(pad_len, &mut decrypt).await?;
    let ia_len = be_u16(incoming.take_deciphered(2, &mut decrypt).await?);
    let mut prefix = incoming
        .take_deciphered(usize::from(ia_len), &mut decrypt)
        .await?
        .to_vec();
    let selected = select(policy, provided)?;

    let mut out = Vec::with_capacity(14 + pads.after_vc);
    out.extend_from_slice(&VC);
    out.extend_from_slice(&selected.to_be_bytes());
    out.extend_from_slice(&pad_len_field(pads.after_vc));
    out.extend_from_slice(&random_bytes(pads.after_vc));
    encrypt.apply_keystream(&mut out);
    write.write_all(&out).await.map_err(MseError::Io)?;

    let mut rest = incoming.rest();
    let (read, write): (BoxAsyncReadVectored, BoxAsyncWrite) = if selected == CRYPTO_RC4 {
        decrypt.apply_keystream(&mut rest);
        prefix.extend_from_slice(&rest);
        (
            Box::new(MseRead::new(read, prefix, Some(decrypt))),
            Box::new(MseWrite::new(write, encrypt)),
        )
    } else {
        prefix.extend_from_slice(&rest);
        (Box::new(MseRead::new(read, prefix, None)), write)
    };
    Ok(Accepted {
        read,
        write,
        info_hash: Some(info_hash),
        selected,
    })
}

/// The receiver's `crypto_select`: under `Require` RC4 only; otherwise plaintext
/// when offered (the peer accepts it, and it costs nothing), else RC4.
fn select(policy: EncryptionPolicy, provided: u32) -> Result<u32, MseError> {
    let allowed = match policy {
        EncryptionPolicy::Require => CRYPTO_RC4,
        _ => CRYPTO_PLAINTEXT | CRYPTO_RC4,
    };
    let common = provided & allowed;
    if common & CRYPTO_PLAINTEXT != 0 {
        Ok(CRYPTO_PLAINTEXT)
    } else if common & CRYPTO_RC4 != 0 {
        Ok(CRYPTO_RC4)
    } else {
        Err(MseError::NoCommonMethod { provided })
    }
}
