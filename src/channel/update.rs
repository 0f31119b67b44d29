//! Signed updates: "the channel's directory is now tree T", numbered.

use serde::{Deserialize, Serialize};

use super::{PublicKey, SecretKey};
use crate::{InfoHash, TreeId};

/// First bytes of an encoded signed update: name and format version.
const MAGIC: &[u8; 8] = b"CASUPDT\x01";
/// What a signature covers, before the update's encoding: no signature made for
/// anything else verifies as an update.
const DOMAIN: &[u8] = b"cas channel update v1\0";
/// The longest node name carried.
pub const MAX_NODE: usize = 64;
/// The longest encoded update taken (one datagram).
pub const MAX_ENCODED: usize = 512;

/// One publication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The channel, so that a record names what it is about.
    pub channel: PublicKey,
    /// Higher wins.
    pub seq: u64,
    /// The directory's tree.
    pub tree: TreeId,
    /// The info-hash of the tree's manifest torrent: how to fetch it.
    pub manifest: InfoHash,
    /// The tree this one was made from, if any: the common ancestor for a merge.
    pub parent: Option<TreeId>,
    /// The publishing node's name, and when it published (seconds since the epoch).
    pub node: String,
    pub time: u64,
}

/// An update with its ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedUpdate {
    pub update: Update,
    pub signature: [u8; 64],
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("not a cas channel update (unknown magic or version)")]
    Magic,
    #[error("update does not decode: {0}")]
    Decode(String),
    #[error("update is {0} bytes, more than {MAX_ENCODED}")]
    TooLong(usize),
    #[error("node name {0:?} is not 1-{MAX_NODE} letters, digits, '-', '_' or '.'")]
    NodeName(String),
    #[error("bad signature: not signed with the channel's secret key")]
    Signature,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    update: Update,
    signature: Vec<u8>,
}

/// Whether `node` may name a node: 1 to [`MAX_NODE`] ASCII letters, digits, `-`, `_`
/// or `.`. A node's name goes into file names (conflict copies), so a name with a
/// `/`, a NUL or anything else is refused wherever one arrives: `cas sync --node`,
/// and every update decoded or verified, whoever signed it.
pub fn check_node_name(node: &str) -> Result<(), UpdateError> {
    let ok = !node.is_empty()
        && node.len() <= MAX_NODE
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UpdateError::NodeName(node.to_string()))
    }
}

fn signed_bytes(update: &Update) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend(postcard::to_stdvec(update).expect("update serialises"));
    m
}

impl SignedUpdate {
    /// Signs `update` with `key` (whatever key it is: [`SignedUpdate::verify`] tells
    /// whether it was the channel's).
    pub fn sign(update: Update, key: &SecretKey) -> SignedUpdate {
        let signature = key.sign(&signed_bytes(&update));
        SignedUpdate { update, signature }
    }

    /// Checks the signature against the channel the update names.
    pub fn verify(&self) -> Result<(), UpdateError> {
        check_node_name(&self.update.node)?;
        if self
            .update
            .channel
            .verifies(&signed_bytes(&self.update), &self.signature)
        {
            Ok(())
        } else {
            Err(UpdateError::Signature)
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            update: self.update.clone(),
            signature: self.signature.to_vec(),
        };
        crate::catalog::encode(MAGIC, &wire)
    }

    /// Decodes (the signature is not checked here: see [`SignedUpdate::verify`]; the
    /// node name is, see [`check_node_name`]).
    pub fn decode(bytes: &[u8]) -> Result<SignedUpdate, UpdateError> {
        if bytes.len() > MAX_ENCODED {
            return Err(UpdateError::TooLong(bytes.len()));
        }
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(UpdateError::Magic)?;
        let wire: Wire = match postcard::take_from_bytes(body) {
            Ok((w, [])) => w,
            Ok((_, rest)) => {
                return Err(UpdateError::Decode(format!(
                    "{} bytes after the update",
                    rest.len()
                )))
            }
            Err(e) => return Err(UpdateError::Decode(e.to_string())),
        };
        let signature: [u8; 64] = wire
            .signature
            .try_into()
            .map_err(|_| UpdateError::Decode("signature is not 64 bytes".into()))?;
        check_node_name(&wire.update.node)?;
        Ok(SignedUpdate {
            update: wire.update,
            signature,
        })
    }

    /// The order in which updates win: higher sequence number, then (two publishers
    /// that picked one number at once) the higher tree id, so that every node picks
    /// the same winner.
    pub fn rank(&self) -> (u64, [u8; 32]) {
        (self.update.seq, self.update.tree.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(channel: PublicKey) -> Update {
        Update {
            channel,
            seq: 7,
            tree: TreeId([3; 32]),
            manifest: InfoHash([4; 20]),
            parent: Some(TreeId([2; 32])),
            node: "a".into(),
            time: 1_700_000_000,
        }
    }

    #[test]
    fn a_signed_update_round_trips_and_verifies() {
        let key = SecretKey::generate();
        let s = SignedUpdate::sign(update(key.public()), &key);
        let bytes = s.encode();
        assert!(bytes.len() < MAX_ENCODED);
        let back = SignedUpdate::decode(&bytes).unwrap();
        assert_eq!(back, s);
        back.verify().unwrap();
    }

    #[test]
    fn an_update_whose_node_name_is_a_path_is_refused_though_signed() {
        let key = SecretKey::generate();
        for node in ["x/../../out/pwn", "../x", "/etc", "a\0b", "", "x y"] {
            let mut u = update(key.public());
            u.node = node.into();
            let s = SignedUpdate::sign(u, &key);
            let err = s.verify().expect_err(node).to_string();
            assert!(err.contains("node name"), "{node:?}: {err}");
            let err = SignedUpdate::decode(&s.encode())
                .expect_err(node)
                .to_string();
            assert!(err.contains("node name"), "{node:?}: {err}");
        }
        for node in ["a", "node-1.lan", "A_b", &"n".repeat(MAX_NODE)] {
            let mut u = update(key.public());
            u.node = node.to_string();
            let s = SignedUpdate::sign(u, &key);
            s.verify().unwrap();
            SignedUpdate::decode(&s.encode()).unwrap().verify().unwrap();
        }
    }

    #[test]
    fn forged_or_altered_updates_are_refused() {
        let key = SecretKey::generate();
        let forger = SecretKey::generate();
        let forged = SignedUpdate::sign(update(key.public()), &forger);
        assert!(matches!(forged.verify(), Err(UpdateError::Signature)));
        let mut altered = SignedUpdate::sign(update(key.public()), &key);
        altered.update.seq += 1;
        assert!(matches!(altered.verify(), Err(UpdateError::Signature)));
        let mut bytes = SignedUpdate::sign(update(key.public()), &key).encode();
        bytes.push(0);
        assert!(SignedUpdate::decode(&bytes).is_err());
        assert!(matches!(
            SignedUpdate::decode(b"CASUPDT\x02"),
            Err(UpdateError::Magic)
        ));
    }
}
