//! Files of an update written out while the rest of its tree still arrives.
//!
//! Writing a file out reads each of its pieces back from the store, checks it, checks
//! the whole content against its hash, writes it and makes it durable. Done only after
//! the last piece came, that is every new byte once more, on every node at the same
//! moment when many nodes fetch one update. So while a fetch runs, each file of the
//! remote tree that the last applied tree does not have (at that path, with that
//! content) is written, as soon as its torrent is complete in the store, to a
//! temporary file in the working folder ([`super::apply::WORK_DIR`]) and made durable.
//! The apply then renames it into place instead of writing it; what the apply does not
//! take is removed. Nothing outside the working folder is touched before the apply,
//! and the apply checks each path as before: a local change still makes a conflict copy.
//! The working folder is reached, as everything the apply writes, through directory
//! handles ([`Dir`]) that refuse a symlink.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::dirfd::Dir;
use crate::export::fill_file;
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::read::load_manifest;
use crate::store::Store;
use crate::{ContentId, InfoHash, Result, TreeId};

/// The files written ahead for one update.
pub struct Ahead {
    /// The synchronised directory, in whose working folder they are written.
    dir: PathBuf,
    tree: TreeId,
    /// The content at each path of what the directory was brought to last: files it
    /// has are not written ahead.
    mine: HashMap<Vec<u8>, ContentId>,
    /// Files of the tree still to write, one per content; `None` until its manifest
    /// is in the store.
    wanted: Option<Vec<Entry>>,
    /// Written and durable, by content: their names in the working folder.
    ready: HashMap<ContentId, OsString>,
    seq: u64,
}

/// The content and torrent of a file entry that has content (an empty file has no
/// torrent, and nothing to write ahead).
fn file_content(e: &Entry) -> Option<(ContentId, InfoHash)> {
    match &e.kind {
        EntryKind::File {
            content,
            info_hash: Some(ih),
            ..
        } => Some((*content, *ih)),
        _ => None,
    }
}

impl Ahead {
    /// Files of `tree`, to be applied in `dir` over the last applied tree `mine`.
    pub fn new(dir: &Path, tree: TreeId, mine: &Manifest) -> Ahead {
        let mine = mine
            .entries
            .iter()
            .filter_map(|e| Some((e.path.clone(), file_content(e)?.0)))
            .collect();
        Ahead {
            dir: dir.to_path_buf(),
            tree,
            mine,
            wanted: None,
            ready: HashMap::new(),
            seq: 0,
        }
    }

    /// Nothing to write ahead (for an apply with nothing fetched).
    pub fn none(dir: &Path) -> Ahead {
        let mut a = Ahead::new(dir, TreeId([0; 32]), &Manifest::default());
        a.wanted = Some(Vec::new());
        a
    }

    /// Writes each wanted file whose torrent is now complete in the store; returns
    /// how many. Stops between files once `stop` is set.
    pub fn round(&mut self, store: &Store, stop: &AtomicBool) -> Result<usize> {
        if self.wanted.is_none() {
            if store.catalog().tree(&self.tree)?.is_none() {
                return Ok(0);
            }
            let remote = load_manifest(store, &self.tree)?;
            let mut seen = std::collections::HashSet::new();
            let mut wanted = Vec::new();
            for e in remote.entries {
                let Some((c, _)) = file_content(&e) else {
                    continue;
                };
                if self.mine.get(&e.path) != Some(&c) && seen.insert(c) {
                    wanted.push(e);
                }
            }
            self.mine = HashMap::new();
            self.wanted = Some(wanted);
        }
        let mut wanted = self.wanted.take().unwrap_or_default();
        let (mut written, mut failed) = (0, None);
        wanted.retain(|e| {
            let complete = failed.is_none()
                && !stop.load(Ordering::Relaxed)
                && file_content(e).is_some_and(|(_, ih)| store.catalog().has_torrent(&ih));
            if !complete {
                return true;
            }
            match self.write(store, e) {
                Ok(()) => {
                    written += 1;
                    false
                }
                Err(err) => {
                    failed = Some(err);
                    true
                }
            }
        });
        self.wanted = Some(wanted);
        failed.map_or(Ok(written), Err)
    }

    fn write(&mut self, store: &Store, e: &Entry) -> Result<()> {
        let Some((content, _)) = file_content(e) else {
            return Ok(());
        };
        let work = super::apply::work_dir(&Dir::open(&self.dir)?)?;
        self.seq += 1;
        let tmp = OsString::from(format!("tmp-{}-ahead-{}", std::process::id(), self.seq));
        let mut file = work.create(&tmp)?;
        if let Err(err) = fill_file(store, e, &mut file, &work.join(&tmp)) {
            let _ = work.remove(&tmp);
            return Err(err);
        }
        self.ready.insert(content, tmp);
        Ok(())
    }

    /// The name in the working folder of the file written ahead with `content`, for
    /// the apply to take.
    pub fn take(&mut self, content: &ContentId) -> Option<OsString> {
        self.ready.remove(content)
    }

    /// How many files are written and not yet taken.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Removes what no apply took.
    pub fn discard(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        // A working folder that is not there or not a directory (a symlink) keeps
        // nothing of ours: nothing to remove.
        let work =
            Dir::open(&self.dir).and_then(|root| root.dir(OsStr::new(super::apply::WORK_DIR)));
        for (_, name) in self.ready.drain() {
            if let Ok(work) = &work {
                let _ = work.remove(&name);
            }
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.discard();
        // The working folder goes too, if nothing else is in it.
        if let Ok(root) = Dir::open(&self.dir) {
            let _ = root.remove_dir(OsStr::new(super::apply::WORK_DIR));
        }
    }
}

/// How often a [`Writer`] looks for newly complete files.
const ROUND: Duration = Duration::from_millis(500);

/// Writes files ahead, a round every [`ROUND`] on a blocking thread, until finished
/// (or dropped).
pub struct Writer {
    ahead: Arc<Mutex<Option<Ahead>>>,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    pub fn start(store: Arc<Store>, ahead: Ahead) -> Writer {
        let ahead = Arc::new(Mutex::new(Some(ahead)));
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn({
            let (ahead, stop, wake) = (ahead.clone(), stop.clone(), wake.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let (ahead, stop, store) = (ahead.clone(), stop.clone(), store.clone());
                    let round = tokio::task::spawn_blocking(move || {
                        let mut a = ahead.lock().unwrap_or_else(|e| e.into_inner());
                        a.as_mut().map_or(Ok(0), |a| a.round(&store, &stop))
                    });
                    match round.await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => tracing::debug!("{n} files written ahead"),
                        // The apply meets the same trouble, and reports it.
                        Ok(Err(e)) => {
                            tracing::debug!("writing files ahead: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ROUND) => {}
                        _ = wake.notified() => {}
                    }
                }
            }
        });
        Writer {
            ahead,
            stop,
            wake,
            task: Some(task),
        }
    }

    /// Stops writing (the file being written is finished) and hands back what was
    /// written.
    pub async fn finish(mut self) -> Option<Ahead> {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.ahead.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import, ImportOptions};
    use crate::sync::apply::{apply, WORK_DIR};
    use crate::sync::merge::plan;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scan(store: &Store, dir: &Path) -> (TreeId, Manifest) {
        let opts = ImportOptions {
            name: Some("t".into()),
            ignore: vec![WORK_DIR.into()],
            ..Default::default()
        };
        let r = import(store, dir, &opts, &|_| {}, &|_| {}).unwrap();
        (r.tree, load_manifest(store, &r.tree).unwrap())
    }

    fn work_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join(WORK_DIR)).map_or(0, |d| d.count())
    }

    #[test]
    fn files_written_ahead_are_renamed_into_place_and_the_rest_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
        let (src, dest) = (tmp.path().join("src"), tmp.path().join("dest"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(src.join("kept.txt"), b"same on both\n").unwrap();
        std::fs::write(src.join("big.bin"), vec![3u8; 50_000]).unwrap();
        std::fs::write(src.join("twin.bin"), vec![3u8; 50_000]).unwrap();
        std::fs::set_permissions(src.join("twin.bin"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let (tree, remote) = scan(&store, &src);
        let stop = AtomicBool::new(false);

        // A tree not in the store yet: nothing to do, no error.
        let mut early = Ahead::new(&dest, TreeId([9; 32]), &Manifest::default());
        assert_eq!(early.round(&store, &stop).unwrap(), 0);

        // The directory already has kept.txt as the tree has it: only the 50 kB
        // content is written ahead, once for both paths that carry it.
        std::fs::write(dest.join("kept.txt"), b"same on both\n").unwrap();
        let mine = Manifest {
            entries: remote
                .entries
                .iter()
                .filter(|e| e.path == b"kept.txt")
                .cloned()
                .collect(),
        };
        let mut ahead = Ahead::new(&dest, tree, &mine);
        assert_eq!(ahead.round(&store, &stop).unwrap(), 1);
        assert_eq!(ahead.round(&store, &stop).unwrap(), 0);
        assert_eq!(work_files(&dest), 1);

        let (_, local) = scan(&store, &dest);
        let origin = |_: &Entry| ("x".to_string(), 1);
        let p = plan(&mine, &local, &remote, &origin);
        apply(&store, &dest, &p, &local, "n", 5, &mut ahead).unwrap();
        assert_eq!(ahead.ready(), 0);
        assert_eq!(
            std::fs::read(dest.join("kept.txt")).unwrap(),
            b"same on both\n"
        );
        for name in ["big.bin", "twin.bin", "empty"] {
            let (a, b) = (src.join(name), dest.join(name));
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{name}"
            );
            let (ma, mb) = (a.metadata().unwrap(), b.metadata().unwrap());
            assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {name}");
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {name}");
            assert_eq!(ma.mtime_nsec(), mb.mtime_nsec(), "mtime of {name}");
        }
        assert!(!dest.join(WORK_DIR).exists());

        // Written ahead but not applied (a fetch that failed): removed when dropped.
        std::fs::write(src.join("new.bin"), vec![5u8; 30_000]).unwrap();
        let (tree, _) = scan(&store, &src);
        let mut unused = Ahead::new(&dest, tree, &remote);
        assert_eq!(unused.round(&store, &stop).unwrap(), 1);
        assert_eq!(work_files(&dest), 1);
        drop(unused);
        assert!(!dest.join(WORK_DIR).exists());

        // Once stopped, a round writes nothing.
        let mut stopped = Ahead::new(&dest, tree, &Manifest::default());
        assert_eq!(stopped.round(&store, &AtomicBool::new(true)).unwrap(), 0);
    }
}
