//! Channels: a name for a directory mirrored on many machines, and the ed25519 key
//! that says who may change it.
//!
//! A channel is a key pair. Its public key, written `caspub-<64 hex>`, is what
//! followers need; the secret key, `cassec-<64 hex>`, lets a node publish, and is
//! given only to the nodes that should. Each publication is a [`SignedUpdate`]: a
//! sequence number and the tree it names, signed with the channel's secret key (the
//! shape of BEP 46's mutable items: sequence number + signature). A node keeps its
//! channels in `STORE/channels/<name>`, and what it knows of each in
//! `STORE/channels/<name>.state` ([`SyncState`]).

mod update;

pub use update::{check_node_name, SignedUpdate, Update, UpdateError, MAX_NODE};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::{check_ref_name, decode, encode};
use crate::chunks::write_atomic;
use crate::store::Store;
use crate::{Error, Result, TreeId};

const KEY_MAGIC: &[u8; 8] = b"CASCHAN\x02";
/// Channel files written before channels had a piece length.
const KEY_MAGIC_V1: &[u8; 8] = b"CASCHAN\x01";
const STATE_MAGIC: &[u8; 8] = b"CASSTAT\x01";
/// The text form of a public key starts with this.
pub const PUBLIC_PREFIX: &str = "caspub-";
/// The text form of a secret key starts with this: what is never written where
/// others may read it (command lines, the lock file, error messages).
pub const SECRET_PREFIX: &str = "cassec-";

/// A channel's public key: what followers check updates against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

/// A channel's secret key: what publishers sign with.
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

fn parse_hex32(s: &str, prefix: &str, what: &str) -> Result<[u8; 32]> {
    let bad = || {
        // A mistyped secret key is still mostly a secret: not repeated.
        let shown = if s.trim().starts_with(SECRET_PREFIX) {
            format!("{SECRET_PREFIX}...")
        } else {
            format!("{s:?}")
        };
        Error::Invalid(format!(
            "{shown} is not a channel {what} (expected {prefix}<64 hex digits>)"
        ))
    };
    let hex_part = s.trim().strip_prefix(prefix).ok_or_else(bad)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
    Ok(out)
}

impl PublicKey {
    /// Parses `caspub-<64 hex>`.
    pub fn parse(s: &str) -> Result<PublicKey> {
        parse_hex32(s, PUBLIC_PREFIX, "public key").map(PublicKey)
    }

    /// Whether `signature` over `message` was made with this key's secret.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &sig).is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0))
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> SecretKey {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source");
        SecretKey(seed)
    }

    /// Parses `cassec-<64 hex>`.
    pub fn parse(s: &str) -> Result<SecretKey> {
        parse_hex32(s, SECRET_PREFIX, "secret key").map(SecretKey)
    }

    /// The text form, `cassec-<64 hex>`.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", hex::encode(self.0))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(
            ed25519_dalek::SigningKey::from_bytes(&self.0)
                .verifying_key()
                .to_bytes(),
        )
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        ed25519_dalek::SigningKey::from_bytes(&self.0)
            .sign(message)
            .to_bytes()
    }
}

/// The piece length of a new channel's trees, whatever the piece length of each
/// node's store. A node passes a piece on only once it holds all of it, so among many
/// followers smaller pieces spread sooner: with eight followers of one source
/// (`benches/sync.sh`), 256 KiB pieces took about a tenth less time than 1 MiB.
pub const PIECE_LENGTH: u32 = 256 * 1024;

/// The piece length of a channel's own torrent (the rendezvous): fixed, so that every
/// node makes the same one.
pub const RENDEZVOUS_PIECE_LENGTH: u32 = 16 * 1024;

/// A channel as this node holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Channel {
    pub public: PublicKey,
    /// Present on publishers only.
    pub secret: Option<SecretKey>,
    /// The piece length this node cuts the channel's trees with before it has
    /// applied one (after that, the applied tree's): set by `cas channel new`; `None`
    /// for a joined channel, which then uses [`PIECE_LENGTH`].
    pub piece_length: Option<u32>,
}

impl Channel {
    /// A channel joined with its key: a `caspub-` follows it, a `cassec-` also
    /// publishes to it.
    pub fn from_key(key: &str) -> Result<Channel> {
        let key = key.trim();
        Ok(if key.starts_with(SECRET_PREFIX) {
            let secret = SecretKey::parse(key)?;
            Channel {
                public: secret.public(),
                secret: Some(secret),
                piece_length: None,
            }
        } else {
            Channel {
                public: PublicKey::parse(key)?,
                secret: None,
                piece_length: None,
            }
        })
    }
}

/// [`Channel`] as files with [`KEY_MAGIC_V1`] hold it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ChannelV1 {
    public: PublicKey,
    secret: Option<SecretKey>,
}

/// The last publication applied to the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub seq: u64,
    pub tree: TreeId,
    /// Who published it, and when (seconds since the epoch): names conflict copies.
    pub node: String,
    pub time: u64,
}

/// What a node knows of a channel, kept between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncState {
    /// The newest valid update seen, as signed (its bytes, [`SignedUpdate::encode`]).
    pub newest: Option<Vec<u8>>,
    /// The update the directory was last brought to, or published from it.
    pub applied: Option<Applied>,
    /// The directory synchronised, and this node's name, from the last `cas sync`.
    pub dir: Option<PathBuf>,
    pub node: Option<String>,
}

/// The channels of a store.
pub struct Channels {
    dir: PathBuf,
}

impl Channels {
    pub fn of(store: &Store) -> Channels {
        Channels {
            dir: store.root().join("channels"),
        }
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.state"))
    }

    /// Records a new channel; an error if one has that name.
    pub fn create(&self, name: &str, channel: &Channel) -> Result<()> {
        check_ref_name(name)?;
        if name.ends_with(".state") {
            return Err(Error::Invalid(format!(
                "{name:?}: a channel name may not end in .state"
            )));
        }
        let path = self.key_path(name);
        if path.exists() {
            return Err(Error::Invalid(format!(
                "a channel named {name:?} exists already ({})",
                path.display()
            )));
        }
        private_dir(&self.dir)?;
        write_secret(&path, &encode(KEY_MAGIC, channel))
    }

    pub fn get(&self, name: &str) -> Result<Channel> {
        check_ref_name(name)?;
        let path = self.key_path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoChannel(name.to_string()))
            }
            Err(e) => return Err(Error::io(&path, "read")(e)),
        };
        let channel: Channel = if bytes.starts_with(KEY_MAGIC_V1) {
            let v1: ChannelV1 = decode(KEY_MAGIC_V1, &bytes, &path)?;
            Channel {
                public: v1.public,
                secret: v1.secret,
                piece_length: None,
            }
        } else {
            decode(KEY_MAGIC, &bytes, &path)?
        };
        if let Some(secret) = &channel.secret {
            if secret.public() != channel.public {
                return Err(Error::Corrupt {
                    path,
                    reason: "the secret key does not match the channel's public key".into(),
                });
            }
        }
        Ok(channel)
    }

    /// Channel names, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, "list")(e)),
        };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(Error::io(&self.dir, "list"))?;
            if let Some(n) = e.file_name().to_str() {
                if !n.ends_with(".state") && !n.starts_with('.') && check_ref_name(n).is_ok() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn state(&self, name: &str) -> Result<SyncState> {
        let path = self.state_path(name);
        match std::fs::read(&path) {
            Ok(b) => decode(STATE_MAGIC, &b, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SyncState::default()),
            Err(e) => Err(Error::io(&path, "read")(e)),
        }
    }

    pub fn set_state(&self, name: &str, state: &SyncState) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir, "create directory"))?;
        write_atomic(&self.state_path(name), &encode(STATE_MAGIC, state))
    }
}

/// Makes the folder of channel files, `0700`: it holds secret keys.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir, "create directory"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(dir, "make private"))
}

/// Writes a file that holds a secret: readable by its owner only, from its creation
/// (a temporary file left by an earlier attempt is removed, not reused with its mode).
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&tmp, "remove")(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(Error::io(&tmp, "create"))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(Error::io(&tmp, "write"))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path, "rename into place"))?;
    crate::chunks::sync_dir(path.parent().expect("a channel file has a parent"))
}

/// The piece length a node cuts the channel's next tree with: the applied tree's, so
/// that every node that follows the channel cuts unchanged files into the same
/// torrents; before any, the channel's own, or [`PIECE_LENGTH`].
pub fn cut_length(store: &Store, channel: &Channel, applied: Option<&Applied>) -> u32 {
    let catalog = store.catalog();
    applied
        .and_then(|a| catalog.tree(&a.tree).ok().flatten())
        .and_then(|t| catalog.torrent(&t.manifest).ok().flatten())
        .map(|r| r.piece_length)
        .or(channel.piece_length)
        .unwrap_or(PIECE_LENGTH)
}

/// The ref that keeps a channel's applied tree alive.
pub fn ref_name(channel: &str) -> String {
    format!("sync.{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let s = SecretKey::generate();
        let p = s.public();
        assert_eq!(PublicKey::parse(&p.to_string()).unwrap(), p);
        assert_eq!(SecretKey::parse(&s.to_text()).unwrap().public(), p);
        let sig = s.sign(b"hello");
        assert!(p.verifies(b"hello", &sig));
        assert!(!p.verifies(b"hellp", &sig));
        assert!(!SecretKey::generate().public().verifies(b"hello", &sig));
        let err = PublicKey::parse("cassec-00").unwrap_err().to_string();
        assert!(err.contains("caspub-<64 hex digits>"), "{err}");
    }

    #[test]
    fn channel_files_of_the_first_version_are_read_without_a_piece_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let channels = Channels::of(&store);
        let secret = SecretKey::generate();
        let public = secret.public();
        let v1 = ChannelV1 {
            public,
            secret: Some(secret),
        };
        std::fs::create_dir_all(&channels.dir).unwrap();
        std::fs::write(channels.key_path("old"), encode(KEY_MAGIC_V1, &v1)).unwrap();
        let old = channels.get("old").unwrap();
        assert_eq!(old.public, public);
        assert!(old.secret.is_some());
        assert_eq!(old.piece_length, None);
        assert_eq!(cut_length(&store, &old, None), PIECE_LENGTH);

        let new = Channel {
            piece_length: Some(64 << 10),
            ..old
        };
        channels.create("new", &new).unwrap();
        let read = channels.get("new").unwrap();
        assert_eq!(read.piece_length, Some(64 << 10));
        assert_eq!(cut_length(&store, &read, None), 64 << 10);
    }
}
