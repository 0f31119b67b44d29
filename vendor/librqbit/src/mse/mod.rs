//! BitTorrent Message Stream Encryption (MSE, also called Protocol Encryption, PE),
//! as libtorrent, rtorrent, Transmission and qBittorrent speak it: an obfuscated
//! handshake that hides the info-hash and the BitTorrent handshake, then RC4 over
//! the rest of the connection, or plaintext if both sides agree to it.
//!
//! The exchange, A dialing B:
//!
//! 1. A->B: Ya, PadA
//! 2. B->A: Yb, PadB
//! 3. A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!    ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4. B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5. A->B: ENCRYPT2(payload)
//!
//! Y = 2^X mod P, P the 768-bit prime of [`crypto`]; S the shared secret; SKEY the
//! info-hash; HASH is SHA-1; pads are 0-512 random bytes; VC is 8 zero bytes;
//! ENCRYPT is RC4 keyed by HASH('keyA', S, SKEY) from A and HASH('keyB', S, SKEY)
//! from B, the first 1024 bytes of keystream discarded; ENCRYPT2 is ENCRYPT if RC4
//! was selected, nothing if plaintext was. The initial payload IA carries A's
//! BitTorrent handshake, so the handshake costs no extra round trip.
//!
//! Every length in it is the peer's: each is checked against the spec's bounds
//! before anything is read for it.

mod crypto;
mod handshake;
mod stream;
#[cfg(test)]
mod tests;

use std::{future::Future, time::Duration};

use futures::TryFutureExt;
use librqbit_core::hash_id::Id20;
use tracing::{debug, trace};

use crate::{
    peer_connection::with_timeout,
    stream_connect::ConnectionKind,
    type_aliases::{BoxAsyncReadVectored, BoxAsyncWrite},
};

pub use crypto::req2_hash;
pub(crate) use handshake::{Accepted, accept, initiate};

/// `crypto_provide`/`crypto_select` bit: the payload in plaintext after the handshake.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
/// `crypto_provide`/`crypto_select` bit: the payload in RC4.
pub const CRYPTO_RC4: u32 = 0x02;

/// Whether peer connections use MSE/PE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncryptionPolicy {
    /// Plaintext BitTorrent only, both ways; an incoming encrypted handshake is not
    /// understood. What librqbit did before it had MSE.
    #[default]
    Off,
    /// Outgoing: an encrypted handshake offering RC4 and plaintext, and, if it fails,
    /// a new connection in plaintext. Incoming: plaintext and encrypted handshakes
    /// both; plaintext selected when the peer offers it, RC4 otherwise.
    Prefer,
    /// Encrypted handshakes with RC4 only, both ways: a plaintext handshake, or a
    /// peer that offers no RC4, is refused.
    Require,
}

/// What went wrong in an encrypted handshake.
#[derive(thiserror::Error, Debug)]
pub enum MseError {
    #[error("error reading or writing the encrypted handshake: {0:#}")]
    Io(#[source] std::io::Error),
    #[error("peer disconnected during the encrypted handshake")]
    Eof,
    #[error("peer's Diffie-Hellman public key is degenerate")]
    BadPublicKey,
    #[error("no HASH('req1', S) within the peer's padding: not an encrypted handshake")]
    NoReq1,
    #[error("no verification constant within the peer's padding")]
    NoVerificationConstant,
    #[error("the encrypted handshake names no torrent of this session")]
    UnknownTorrent,
    #[error("wrong verification constant")]
    BadVerificationConstant,
    #[error("padding of {0} bytes, more than 512")]
    PadTooLong(u16),
    #[error("no crypto method in common: the peer offers {provided:#x}")]
    NoCommonMethod { provided: u32 },
    #[error("the peer selected crypto method {selected:#x}; {provided:#x} was offered")]
    BadSelect { selected: u32, provided: u32 },
    #[error("plaintext handshake refused: encryption is required")]
    PlaintextRefused,
    #[error("initial payload of {0} bytes, more than 65535")]
    PayloadTooLong(usize),
}

/// An outgoing connection under `policy`, with `handshake` (our BitTorrent handshake)
/// sent: inside the encrypted handshake (RC4 or plaintext after it, as the peer
/// selected), or in plaintext. `connect` opens a connection; under
/// [`EncryptionPolicy::Prefer`] it is called again for a plaintext connection when
/// the encrypted handshake fails on the first.
pub(crate) async fn dial<F, Fut>(
    policy: EncryptionPolicy,
    mut connect: F,
    info_hash: Id20,
    handshake: &[u8],
    timeout: Duration,
) -> crate::Result<(ConnectionKind, BoxAsyncReadVectored, BoxAsyncWrite)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::Result<(ConnectionKind, BoxAsyncReadVectored, BoxAsyncWrite)>>,
{
    use tokio::io::AsyncWriteExt;

    let provide = match policy {
        EncryptionPolicy::Off => 0,
        EncryptionPolicy::Prefer => CRYPTO_PLAINTEXT | CRYPTO_RC4,
        EncryptionPolicy::Require => CRYPTO_RC4,
    };
    if provide != 0 {
        let (kind, read, write) = connect().await?;
        let encrypted = with_timeout(
            "encrypted handshake",
            timeout,
            initiate(read, write, &info_hash, provide, handshake).map_err(crate::Error::from),
        )
        .await;
        match encrypted {
            Ok(e) => {
                trace!(crypto_select = e.selected, "encrypted handshake done");
                return Ok((kind, e.read, e.write));
            }
            Err(e) if policy == EncryptionPolicy::Prefer => {
                debug!("encrypted handshake failed, connecting again in plaintext: {e:#}");
            }
            Err(e) => return Err(e),
        }
    }
    let (kind, read, mut write) = connect().await?;
    with_timeout(
        "writing",
        timeout,
        write
            .write_all(handshake)
            .map_err(crate::Error::WriteHandshake),
    )
    .await?;
    Ok((kind, read, write))
}
