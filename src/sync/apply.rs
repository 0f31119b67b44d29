//! Carrying out a merge [`Plan`] on the directory.
//!
//! New content is written to a temporary file under `DIR/.cas-sync/`, made durable,
//! then renamed over its path, so a reader sees the old file or the new one, never a
//! mix. Before anything local is replaced or removed, its metadata is compared with
//! what the scan the plan was made from saw: an entry changed since then is moved
//! aside as a conflict copy instead, so an edit made during the apply is kept too.
//! A file written ahead while the tree arrived ([`super::ahead`]) is renamed into
//! place the same way, instead of being written again.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ahead::Ahead;
use super::merge::{conflict_name, Plan, Step};
use crate::export::{create_new, fill_file, mtime, set_symlink_mtime};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::store::Store;
use crate::{Error, Result};

/// The folder, at the top of a synchronised directory, that holds files being
/// written; never scanned, never published.
pub const WORK_DIR: &str = ".cas-sync";

/// What an apply did.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub written: usize,
    pub removed: usize,
    /// Conflict copies made (planned, and for entries changed during the apply).
    pub conflicts: usize,
}

struct Ctx<'a> {
    store: &'a Store,
    dir: &'a Path,
    /// What the scan saw, by path.
    scanned: std::collections::HashMap<&'a [u8], &'a Entry>,
    /// Node name and time for copies of entries changed during the apply.
    node: &'a str,
    now: u64,
    done: Applied,
    tmp_seq: u64,
    ahead: &'a mut Ahead,
}

fn at(dir: &Path, rel: &[u8]) -> Result<PathBuf> {
    super::inside(dir, rel)
}

/// Makes the working folder of `dir` and checks it is one: a directory, not a
/// symlink to one elsewhere.
pub(crate) fn work_dir(dir: &Path) -> Result<PathBuf> {
    let work = dir.join(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(Error::io(&work, "create directory"))?;
    let meta = std::fs::symlink_metadata(&work).map_err(Error::io(&work, "read metadata"))?;
    if meta.is_dir() {
        Ok(work)
    } else {
        Err(Error::BadInput {
            path: work,
            reason: "the working folder of a sync is not a directory (a symbolic link?): \
                     refused, as a sync writes nothing outside its directory"
                .into(),
        })
    }
}

/// Whether the entry at `path` on disk is still what the scan saw.
fn unchanged(path: &Path, seen: Option<&Entry>) -> bool {
    let meta = std::fs::symlink_metadata(path);
    match (meta, seen) {
        (Err(e), None) => e.kind() == std::io::ErrorKind::NotFound,
        (Ok(m), Some(e)) => match &e.kind {
            EntryKind::Dir => m.is_dir(),
            EntryKind::File { size, .. } => {
                m.is_file()
                    && m.len() == *size
                    && m.mtime() == e.mtime_secs
                    && m.mtime_nsec() as u32 == e.mtime_nanos
            }
            EntryKind::Symlink { target } => {
                m.file_type().is_symlink()
                    && std::fs::read_link(path)
                        .is_ok_and(|t| t.as_os_str().as_bytes() == target.as_slice())
            }
        },
        _ => false,
    }
}

impl Ctx<'_> {
    fn tmp(&mut self) -> PathBuf {
        self.tmp_seq += 1;
        self.dir
            .join(WORK_DIR)
            .join(format!("tmp-{}-{}", std::process::id(), self.tmp_seq))
    }

    /// Moves what is at `rel` aside if it changed since the scan. Returns whether
    /// anything is still there.
    fn guard(&mut self, rel: &[u8]) -> Result<bool> {
        let path = at(self.dir, rel)?;
        let seen = self.scanned.get(rel).copied();
        if unchanged(&path, seen) {
            return Ok(seen.is_some());
        }
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(false);
        }
        let to = at(self.dir, &conflict_name(rel, self.node, self.now))?;
        std::fs::rename(&path, &to).map_err(Error::io(&path, "move aside (conflict copy)"))?;
        self.done.conflicts += 1;
        Ok(false)
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::Keep { path, to } => {
                let from = at(self.dir, path)?;
                let to = at(self.dir, to)?;
                std::fs::rename(&from, &to)
                    .map_err(Error::io(&from, "move aside (conflict copy)"))?;
                self.done.conflicts += 1;
            }
            Step::Remove { path } => {
                if !self.guard(path)? {
                    return Ok(());
                }
                let p = at(self.dir, path)?;
                let meta = std::fs::symlink_metadata(&p).map_err(Error::io(&p, "read metadata"))?;
                if meta.is_dir() {
                    match std::fs::remove_dir(&p) {
                        Ok(()) => self.done.removed += 1,
                        // New files inside: the directory stays, with them.
                        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                        Err(e) => return Err(Error::io(&p, "remove directory")(e)),
                    }
                } else {
                    std::fs::remove_file(&p).map_err(Error::io(&p, "remove"))?;
                    self.done.removed += 1;
                }
            }
            Step::Write { entry } => self.write(entry)?,
        }
        Ok(())
    }

    fn write(&mut self, e: &Entry) -> Result<()> {
        let path = at(self.dir, &e.path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent, "create directory"))?;
        }
        let present = self.guard(&e.path)?;
        if let EntryKind::Dir = e.kind {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&path).map_err(Error::io(&path, "remove"))?;
                    std::fs::create_dir(&path).map_err(Error::io(&path, "create directory"))?;
                }
                Err(_) => {
                    std::fs::create_dir(&path).map_err(Error::io(&path, "create directory"))?
                }
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
                .map_err(Error::io(&path, "set mode"))?;
            self.done.written += 1;
            return Ok(());
        }
        let ready = match &e.kind {
            EntryKind::File { content, .. } => self.ahead.take(content),
            _ => None,
        };
        let tmp = match (ready, &e.kind) {
            (Some(tmp), _) => {
                if let Err(err) = finish_ahead(&tmp, e) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err);
                }
                tmp
            }
            (None, EntryKind::Symlink { target }) => {
                let tmp = self.tmp();
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &tmp)
                    .map_err(Error::io(&tmp, "create symlink"))?;
                set_symlink_mtime(&tmp, e).map_err(Error::io(&tmp, "set mtime"))?;
                tmp
            }
            (None, _) => {
                let tmp = self.tmp();
                let mut file = create_new(&tmp)?;
                if let Err(err) = fill_file(self.store, e, &mut file, &tmp) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err);
                }
                tmp
            }
        };
        // A directory in the way (the remote has a file there) goes if empty.
        if present && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            if let Err(err) = std::fs::remove_dir(&path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(&path, "replace a directory with a file")(err));
            }
        }
        std::fs::rename(&tmp, &path).map_err(Error::io(&path, "rename into place"))?;
        self.done.written += 1;
        Ok(())
    }
}

/// Gives a file written ahead the entry's mode and mtime (two entries may share
/// content but not these), durably.
fn finish_ahead(tmp: &Path, e: &Entry) -> Result<()> {
    let file = std::fs::File::open(tmp).map_err(Error::io(tmp, "open"))?;
    file.set_permissions(std::fs::Permissions::from_mode(e.mode))
        .map_err(Error::io(tmp, "set mode"))?;
    file.set_modified(mtime(e))
        .map_err(Error::io(tmp, "set mtime"))?;
    file.sync_all().map_err(Error::io(tmp, "sync"))
}

/// Removes what an apply cut short left in `dir`'s working folder (temporary files
/// that were never renamed into place).
pub fn clean(dir: &Path) -> Result<()> {
    let work = dir.join(WORK_DIR);
    if !std::fs::symlink_metadata(&work).is_ok_and(|m| m.is_dir()) {
        // None, or not cas's (a symlink is not followed).
        return Ok(());
    }
    let entries = match std::fs::read_dir(&work) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&work, "list")(e)),
    };
    for e in entries {
        let path = e.map_err(Error::io(&work, "list"))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tmp-"))
        {
            std::fs::remove_file(&path).map_err(Error::io(&path, "remove"))?;
        }
    }
    let _ = std::fs::remove_dir(&work);
    Ok(())
}

/// Carries out `plan` in `dir`, whose state when planned was `scanned`, taking
/// the files written `ahead` where it can.
pub fn apply(
    store: &Store,
    dir: &Path,
    plan: &Plan,
    scanned: &Manifest,
    node: &str,
    now: u64,
    ahead: &mut Ahead,
) -> Result<Applied> {
    let work = work_dir(dir)?;
    let mut ctx = Ctx {
        store,
        dir,
        scanned: scanned
            .entries
            .iter()
            .map(|e| (e.path.as_slice(), e))
            .collect(),
        node,
        now,
        done: Applied::default(),
        tmp_seq: 0,
        ahead,
    };
    for step in &plan.steps {
        ctx.step(step)?;
    }
    // Each file is durable; now the names that point at them.
    let mut dirs: Vec<PathBuf> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Write { entry } => at(dir, &entry.path)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf)),
            _ => None,
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        crate::chunks::sync_dir(&d)?;
    }
    ctx.ahead.discard();
    // Left only while in use (a file in it means a write was cut short).
    let _ = std::fs::remove_dir(&work);
    Ok(ctx.done)
}

#[cfg(test)]
mod tests;
