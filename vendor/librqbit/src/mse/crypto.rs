//! The arithmetic of MSE: the Diffie-Hellman exchange, the hashes that name things
//! without showing them, and the RC4 keys.

use std::sync::LazyLock;

use num_bigint::BigUint;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1w::{ISha1, Sha1};

use super::MseError;

/// Length of a public key and of the shared secret: 768 bits.
pub(crate) const KEY_LEN: usize = 96;

/// The 768-bit safe prime every MSE implementation uses; the generator is 2.
const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

/// Bytes of the private exponent: 160 bits (the spec asks for at least 128; more
/// only costs time).
const PRIVATE_LEN: usize = 20;

/// Keystream bytes dropped before the first byte is enciphered (RC4's weak start).
const RC4_DISCARD: usize = 1024;

static PRIME: LazyLock<BigUint> = LazyLock::new(|| {
    BigUint::parse_bytes(PRIME_HEX, 16).expect("the MSE prime is valid hexadecimal")
});

/// One side's Diffie-Hellman key pair, used for one handshake.
pub(crate) struct KeyPair {
    private: BigUint,
    pub public: [u8; KEY_LEN],
}

impl KeyPair {
    pub fn generate() -> Self {
        let mut x = [0u8; PRIVATE_LEN];
        rand::fill(&mut x[..]);
        let private = BigUint::from_bytes_be(&x);
        let public = to_key_bytes(&BigUint::from(2u32).modpow(&private, &PRIME));
        Self { private, public }
    }

    /// S, from the other side's public key. A key of 0, 1 or P - 1 and above (which
    /// would make S guessable) is refused.
    pub fn shared_secret(&self, theirs: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], MseError> {
        let y = BigUint::from_bytes_be(theirs);
        let p_minus_1 = &*PRIME - 1u32;
        if y <= BigUint::from(1u32) || y >= p_minus_1 {
            return Err(MseError::BadPublicKey);
        }
        Ok(to_key_bytes(&y.modpow(&self.private, &PRIME)))
    }
}

/// A number below P as 96 big-endian bytes, zeros first.
fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    // Every number here is reduced mod P, so it is at most KEY_LEN bytes long.
    let start = KEY_LEN.saturating_sub(bytes.len());
    let take = bytes.len().min(KEY_LEN);
    out[start..].copy_from_slice(&bytes[bytes.len() - take..]);
    out
}

/// SHA-1 of the parts, one after the other (the spec's HASH).
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// HASH('req2', SKEY): how a receiver recognises the info-hash an initiator names.
pub fn req2_hash(info_hash: &[u8; 20]) -> [u8; 20] {
    hash(&[b"req2", info_hash])
}

pub(crate) fn xor20(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The RC4 state for one direction: keyed by HASH(name, S, SKEY), where `name` is
/// `keyA` for what the initiator sends and `keyB` for what the receiver sends, with
/// the first 1024 bytes of keystream discarded.
pub(crate) fn cipher(name: &[u8; 4], secret: &[u8; KEY_LEN], skey: &[u8; 20]) -> Rc4 {
    let key = hash(&[name, secret, skey]);
    let mut rc4 = Rc4::new_from_slice(&key).expect("a 20-byte key is within RC4's 1..=256");
    let mut discard = [0u8; RC4_DISCARD];
    rc4.apply_keystream(&mut discard);
    rc4
}
