//! The store lock: one process at a time owns a store (sled is single-process).
//!
//! `STORE/lock` is locked with `flock` for the life of the [`StoreLock`]; the holder
//! writes its pid and command line into it so that a second process can say who
//! holds the store instead of failing obscurely inside sled.
//!
//! A store is its owner's alone (docs/threat-model.md): taking the lock makes the
//! store directory `0700` when its owner runs cas, so no other local user reaches
//! anything in it (channel keys, the lock, `cas.sock`); the lock file itself is
//! `0600`, and what follows a secret key's prefix on the command line is not
//! recorded in it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Error, Result};

/// Held for as long as the store is open.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock on `dir/lock`, or fails with [`Error::StoreBusy`] naming the holder.
    pub fn acquire(dir: &Path) -> Result<Self> {
        make_private(dir)?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(Error::io(&path, "open lock file"))?;
        // A lock file made before stores were private (one someone else owns is theirs).
        let meta = file
            .metadata()
            .map_err(Error::io(&path, "read lock file"))?;
        if meta.uid() == euid() && meta.mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(Error::io(&path, "make the lock file private"))?;
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::StoreBusy {
                    path: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "another process".to_string()
                    } else {
                        holder.replace('\n', ", ")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, "lock store")(e)),
        }
        let cmd: Vec<String> = std::env::args_os()
            .map(|a| redact(&a.to_string_lossy()))
            .collect();
        let me = format!("pid {}\ncommand {}\n", std::process::id(), cmd.join(" "));
        let write = |f: &mut File| {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(me.as_bytes())
        };
        write(&mut file).map_err(Error::io(&path, "write lock file"))?;
        Ok(StoreLock { _file: file })
    }
}

/// What marks a secret (a channel's secret key, `cassec-<hex>`) on a command line.
const SECRET_MARK: &str = "cassec-";

/// A command-line argument as the lock file records it: anything after a secret
/// key's prefix is left out.
fn redact(arg: &str) -> String {
    match arg.find(SECRET_MARK) {
        Some(at) => format!("{}{SECRET_MARK}<redacted>", &arg[..at]),
        None => arg.to_string(),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Makes the store directory `dir` readable by its owner only, if the user running
/// cas owns it (a store someone else owns is left as it is; its lock file still
/// says whose it is).
pub(crate) fn make_private(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(Error::io(dir, "read store directory"))?;
    if meta.uid() == euid() && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io(dir, "make the store directory private"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_recorded_and_the_store_is_private() {
        assert_eq!(
            redact("cassec-0123abcd"),
            "cassec-<redacted>",
            "a secret key alone"
        );
        assert_eq!(redact("--key=cassec-99"), "--key=cassec-<redacted>");
        assert_eq!(redact("caspub-0123"), "caspub-0123");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("lock"), b"").unwrap();
        std::fs::set_permissions(dir.join("lock"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let lock = StoreLock::acquire(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("lock")), 0o600);
        drop(lock);
    }
}
