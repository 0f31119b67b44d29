//! Carrying out a merge [`Plan`] on the directory.
//!
//! New content is written to a temporary file under `DIR/.cas-sync/`, made durable,
//! then renamed over its path, so a reader sees the old file or the new one, never a
//! mix. Before anything local is replaced or removed, its metadata is compared with
//! what the scan the plan was made from saw: an entry changed since then is moved
//! aside as a conflict copy instead, so an edit made during the apply is kept too.
//! A file written ahead while the tree arrived ([`super::ahead`]) is renamed into
//! place the same way, instead of being written again.
//!
//! Every path is first checked by [`super::inside`] (for the error a bad path gets),
//! then reached through directory handles ([`Dir`]) opened one component at a time
//! from `DIR` down with `O_NOFOLLOW`: each change (a file created, a rename, a
//! removal, a directory made, a mode set) is made relative to a handle on its
//! directory. So a directory that another process swaps for a symlink after the
//! check is refused when the write comes, not written through.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ahead::Ahead;
use super::merge::{conflict_name, Plan, Step};
use crate::chunks::{synced, Synced};
use crate::dirfd::{split, Dir};
use crate::export::{fill_file, mtime};
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
    /// Handles on `dir` and on its working folder.
    root: Dir,
    work: Dir,
    /// What the scan saw, by path.
    scanned: std::collections::HashMap<&'a [u8], &'a Entry>,
    /// Node name and time for copies of entries changed during the apply.
    node: &'a str,
    now: u64,
    done: Applied,
    tmp_seq: u64,
    ahead: &'a mut Ahead,
    /// The directories something was renamed into, to fsync at the end.
    written_in: BTreeSet<Vec<u8>>,
}

/// A path of a plan, checked by [`super::inside`]: where it is (for messages), its
/// parent's components below `DIR` and its name.
struct Place<'p> {
    path: PathBuf,
    parents: Vec<&'p OsStr>,
    name: &'p OsStr,
}

fn at<'p>(dir: &Path, rel: &'p [u8]) -> Result<Place<'p>> {
    #[cfg(test)]
    tests::race(true);
    let checked = super::inside(dir, rel);
    #[cfg(test)]
    tests::race(false);
    let (parents, name) = split(rel);
    Ok(Place {
        path: checked?,
        parents,
        name,
    })
}

/// Makes the working folder below `root` and opens it: a directory, not a symlink
/// to one elsewhere.
pub(crate) fn work_dir(root: &Dir) -> Result<Dir> {
    let name = OsStr::new(WORK_DIR);
    let refuse = |e: Error| match e {
        Error::BadInput { path, reason } => Error::BadInput {
            path,
            reason: format!(
                "the working folder of a sync {reason}: refused, as a sync writes \
                 nothing outside its directory"
            ),
        },
        e => e,
    };
    root.mkdir(name, 0o777).map_err(refuse)?;
    root.dir(name).map_err(refuse)
}

/// Whether the entry `name` in `parent` is still what the scan saw.
fn unchanged(parent: &Dir, name: &OsStr, seen: Option<&Entry>) -> bool {
    match (parent.stat(name), seen) {
        (Err(e), None) => e.kind() == std::io::ErrorKind::NotFound,
        (Ok(st), Some(e)) => {
            let kind = st.st_mode & libc::S_IFMT;
            match &e.kind {
                EntryKind::Dir => kind == libc::S_IFDIR,
                EntryKind::File { size, .. } => {
                    kind == libc::S_IFREG
                        && st.st_size as u64 == *size
                        && st.st_mtime == e.mtime_secs
                        && st.st_mtime_nsec as u32 == e.mtime_nanos
                }
                EntryKind::Symlink { target } => {
                    kind == libc::S_IFLNK && parent.read_link(name).is_ok_and(|t| t == *target)
                }
            }
        }
        _ => false,
    }
}

fn is_dir(parent: &Dir, name: &OsStr) -> bool {
    parent
        .stat(name)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

impl Ctx<'_> {
    fn tmp(&mut self) -> OsString {
        self.tmp_seq += 1;
        format!("tmp-{}-{}", std::process::id(), self.tmp_seq).into()
    }

    /// Moves what is at `place` (the path `rel`, in `parent`) aside to `aside` if it
    /// changed since the scan. Returns whether anything is still there.
    fn guard(&mut self, parent: &Dir, rel: &[u8], place: &Place, aside: &Place) -> Result<bool> {
        let seen = self.scanned.get(rel).copied();
        if unchanged(parent, place.name, seen) {
            return Ok(seen.is_some());
        }
        if parent.stat(place.name).is_err() {
            return Ok(false);
        }
        // A sibling, but whatever a conflict name is, it is reached by handles too.
        let to = if aside.parents == place.parents {
            None
        } else {
            Some(self.root.walk(aside.parents.iter().copied())?)
        };
        parent
            .rename(place.name, to.as_ref().unwrap_or(parent), aside.name)
            .map_err(Error::io(&place.path, "move aside (conflict copy)"))?;
        self.done.conflicts += 1;
        Ok(false)
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::Keep { path, to } => {
                let (from, to) = (at(self.dir, path)?, at(self.dir, to)?);
                let from_dir = self.root.walk(from.parents.iter().copied())?;
                let to_dir = self.root.walk(to.parents.iter().copied())?;
                from_dir
                    .rename(from.name, &to_dir, to.name)
                    .map_err(Error::io(&from.path, "move aside (conflict copy)"))?;
                self.done.conflicts += 1;
            }
            Step::Remove { path } => {
                let place = at(self.dir, path)?;
                let aside_name = conflict_name(path, self.node, self.now);
                let aside = at(self.dir, &aside_name)?;
                // No parent: nothing there to remove.
                let Some(parent) = self.root.walk_if_any(place.parents.iter().copied())? else {
                    return Ok(());
                };
                if !self.guard(&parent, path, &place, &aside)? {
                    return Ok(());
                }
                if is_dir(&parent, place.name) {
                    match parent.remove_dir(place.name) {
                        Ok(()) => self.done.removed += 1,
                        // New files inside: the directory stays, with them.
                        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                        Err(e) => return Err(Error::io(&place.path, "remove directory")(e)),
                    }
                } else {
                    parent
                        .remove(place.name)
                        .map_err(Error::io(&place.path, "remove"))?;
                    self.done.removed += 1;
                }
            }
            Step::Write { entry } => self.write(entry)?,
        }
        Ok(())
    }

    fn write(&mut self, e: &Entry) -> Result<()> {
        let place = at(self.dir, &e.path)?;
        let aside_name = conflict_name(&e.path, self.node, self.now);
        let aside = at(self.dir, &aside_name)?;
        let parent = self.root.make_dirs(place.parents.iter().copied(), 0o777)?;
        let present = self.guard(&parent, &e.path, &place, &aside)?;
        let name = place.name;
        if let EntryKind::Dir = e.kind {
            if present && !is_dir(&parent, name) {
                parent
                    .remove(name)
                    .map_err(Error::io(&place.path, "remove"))?;
            }
            parent.mkdir(name, 0o777)?;
            parent
                .dir(name)?
                .file()
                .set_permissions(std::fs::Permissions::from_mode(e.mode))
                .map_err(Error::io(&place.path, "set mode"))?;
            self.done.written += 1;
            return Ok(());
        }
        let ready = match &e.kind {
            EntryKind::File { content, .. } => self.ahead.take(content),
            _ => None,
        };
        let tmp = match (ready, &e.kind) {
            (Some(tmp), _) => {
                if let Err(err) = finish_ahead(&self.work, &tmp, e) {
                    let _ = self.work.remove(&tmp);
                    return Err(err);
                }
                tmp
            }
            (None, EntryKind::Symlink { target }) => {
                let tmp = self.tmp();
                if let Err(err) =
                    self.work
                        .symlink(OsStr::from_bytes(target), &tmp, e.mtime_secs, e.mtime_nanos)
                {
                    let _ = self.work.remove(&tmp);
                    return Err(err);
                }
                tmp
            }
            (None, _) => {
                let tmp = self.tmp();
                let mut file = self.work.create(&tmp)?;
                if let Err(err) = fill_file(self.store, e, &mut file, &self.work.join(&tmp)) {
                    let _ = self.work.remove(&tmp);
                    return Err(err);
                }
                tmp
            }
        };
        // A directory in the way (the remote has a file there) goes if empty.
        if present && is_dir(&parent, name) {
            if let Err(err) = parent.remove_dir(name) {
                let _ = self.work.remove(&tmp);
                return Err(Error::io(&place.path, "replace a directory with a file")(
                    err,
                ));
            }
        }
        if let Err(err) = self.work.rename(&tmp, &parent, name) {
            let _ = self.work.remove(&tmp);
            return Err(Error::io(&place.path, "rename into place")(err));
        }
        let parents = e.path.iter().rposition(|&b| b == b'/').unwrap_or(0);
        self.written_in.insert(e.path[..parents].to_vec());
        self.done.written += 1;
        Ok(())
    }
}

/// Gives the file written ahead as `name` in `work` the entry's mode and mtime (two
/// entries may share content but not these), durably.
fn finish_ahead(work: &Dir, name: &OsStr, e: &Entry) -> Result<()> {
    let path = work.join(name);
    let file = work.open_file(name)?;
    file.set_permissions(std::fs::Permissions::from_mode(e.mode))
        .map_err(Error::io(&path, "set mode"))?;
    file.set_modified(mtime(e))
        .map_err(Error::io(&path, "set mtime"))?;
    file.sync_all().map_err(Error::io(&path, "sync"))
}

/// Removes what an apply cut short left in `dir`'s working folder (temporary files
/// that were never renamed into place).
pub fn clean(dir: &Path) -> Result<()> {
    let root = match Dir::open(dir) {
        Ok(root) => root,
        Err(Error::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let work = match root.dir_if_any(OsStr::new(WORK_DIR)) {
        Ok(Some(work)) => work,
        // None, or not cas's (a symlink is not followed).
        Ok(None) | Err(Error::BadInput { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    // Listed by path, removed through the handle: if the folder is swapped
    // meanwhile, the names may be another folder's, but only ours lose files.
    let listed = std::fs::read_dir(work.path()).map_err(Error::io(work.path(), "list"))?;
    for entry in listed {
        let name = entry.map_err(Error::io(work.path(), "list"))?.file_name();
        if !name.as_bytes().starts_with(b"tmp-") {
            continue;
        }
        match work.remove(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(work.join(&name), "remove")(e)),
        }
    }
    let _ = root.remove_dir(OsStr::new(WORK_DIR));
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
    let root = Dir::open(dir)?;
    let work = work_dir(&root)?;
    let mut ctx = Ctx {
        store,
        dir,
        root,
        work,
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
        written_in: BTreeSet::new(),
    };
    for step in &plan.steps {
        ctx.step(step)?;
    }
    // Each file is durable; now the names that point at them.
    for rel in &ctx.written_in {
        let parts = rel.split(|&b| b == b'/').filter(|c| !c.is_empty());
        let d = ctx.root.walk(parts.map(OsStr::from_bytes))?;
        d.sync()?;
        synced(Synced::Dir(d.path()));
    }
    ctx.ahead.discard();
    // Left only while in use (a file in it means a write was cut short).
    let _ = ctx.root.remove_dir(OsStr::new(WORK_DIR));
    Ok(ctx.done)
}

#[cfg(test)]
mod tests;
