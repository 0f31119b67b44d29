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
mod tests {
    use super::*;
    use crate::import::{import, ImportOptions};
    use crate::sync::merge::plan;

    fn scan(store: &Store, dir: &Path) -> Manifest {
        let opts = ImportOptions {
            name: Some("t".into()),
            ignore: vec![WORK_DIR.into()],
            ..Default::default()
        };
        let r = import(store, dir, &opts, &|_| {}, &|_| {}).unwrap();
        crate::read::load_manifest(store, &r.tree).unwrap()
    }

    #[test]
    fn an_entry_changed_during_the_apply_is_moved_aside_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
        let (src, dest) = (tmp.path().join("src"), tmp.path().join("dest"));
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(src.join("a.txt"), b"one\n").unwrap();
        std::fs::write(src.join("sub/b.bin"), vec![7u8; 40_000]).unwrap();
        let first = scan(&store, &src);
        let origin = |_: &Entry| ("x".to_string(), 1);
        let empty = Manifest::default();
        let p = plan(&empty, &empty, &first, &origin);
        apply(&store, &dest, &p, &empty, "n", 5, &mut Ahead::none(&dest)).unwrap();
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"one\n");
        assert_eq!(
            std::fs::read(dest.join("sub/b.bin")).unwrap(),
            vec![7u8; 40_000]
        );
        assert!(!dest.join(WORK_DIR).exists());

        // The update changes a.txt; the scan saw it as applied, but a user edits it
        // before the apply gets there.
        let scanned = scan(&store, &dest);
        std::fs::write(src.join("a.txt"), b"two\n").unwrap();
        let second = scan(&store, &src);
        std::fs::write(dest.join("a.txt"), b"edited meanwhile\n").unwrap();
        let p = plan(&first, &scanned, &second, &origin);
        let done = apply(&store, &dest, &p, &scanned, "n", 5, &mut Ahead::none(&dest)).unwrap();
        assert_eq!(done.conflicts, 1);
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"two\n");
        assert_eq!(
            std::fs::read(dest.join("a.txt.conflict-n-5")).unwrap(),
            b"edited meanwhile\n"
        );

        // What a cut-short apply leaves is cleaned away.
        std::fs::create_dir_all(dest.join(WORK_DIR)).unwrap();
        std::fs::write(dest.join(WORK_DIR).join("tmp-1-1"), b"partial").unwrap();
        clean(&dest).unwrap();
        assert!(!dest.join(WORK_DIR).exists());
    }

    /// A channel's update whose node name is a path (`x/../../out/pwn`), with a
    /// directory `f.conflict-x/` in its tree: the conflict copy of `f` would be
    /// renamed to `DIR/../out/pwn-7`. Nothing a plan says is written outside `DIR`.
    #[test]
    fn no_step_of_a_plan_reaches_outside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
        let (src, dest) = (tmp.path().join("src"), tmp.path().join("dest"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), b"base\n").unwrap();
        let base = scan(&store, &src);
        std::fs::create_dir_all(dest.join("f.conflict-x")).unwrap();
        std::fs::write(dest.join("f"), b"the publisher's file\n").unwrap();
        let local = scan(&store, &dest);
        std::fs::create_dir_all(src.join("f.conflict-x")).unwrap();
        std::fs::write(src.join("f"), b"remote\n").unwrap();
        let remote = scan(&store, &src);
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("pwn-7"), b"precious\n").unwrap();
        let hostile = |_: &Entry| ("x/../../out/pwn".to_string(), 7);
        let p = plan(&base, &local, &remote, &hostile);
        let done = apply(&store, &dest, &p, &local, "n", 5, &mut Ahead::none(&dest));
        assert_eq!(std::fs::read(out.join("pwn-7")).unwrap(), b"precious\n");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
        // The local version is kept, inside.
        done.unwrap();
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"remote\n");
        let kept: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("f.conflict-")
            })
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"the publisher's file\n");

        // Steps naming paths outside, whoever made them, are refused.
        let entry = remote.entries.iter().find(|e| e.path == b"f").unwrap();
        for step in [
            Step::Keep {
                path: b"f".to_vec(),
                to: b"f.conflict-x/../../out/pwn-7".to_vec(),
            },
            Step::Write {
                entry: Entry {
                    path: b"f.conflict-x/../../out/pwn-7".to_vec(),
                    ..entry.clone()
                },
            },
            Step::Remove {
                path: b"../out/pwn-7".to_vec(),
            },
            Step::Write {
                entry: Entry {
                    path: out.join("abs").as_os_str().as_bytes().to_vec(),
                    ..entry.clone()
                },
            },
        ] {
            let p = Plan {
                steps: vec![step.clone()],
                conflicts: 0,
            };
            let scanned = scan(&store, &dest);
            let err = apply(&store, &dest, &p, &scanned, "n", 5, &mut Ahead::none(&dest))
                .expect_err(&format!("{step:?}"))
                .to_string();
            assert!(err.contains("outside"), "{step:?}: {err}");
            assert_eq!(std::fs::read(out.join("pwn-7")).unwrap(), b"precious\n");
            assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
            assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"remote\n");
        }
    }
}
