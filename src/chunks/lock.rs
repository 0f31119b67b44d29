//! The store lock: one process at a time owns a store (sled is single-process).
//!
//! `STORE/lock` is locked with `flock` for the life of the [`StoreLock`]; the holder
//! writes its pid and command line into it so that a second process can say who
//! holds the store instead of failing obscurely inside sled.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
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
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path, "open lock file"))?;
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
        let cmd: Vec<String> = std::env::args().collect();
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
