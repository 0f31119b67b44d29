//! The power-loss model: what a crash at each sync point of the store would leave,
//! and a test that imports with a crash at every one of them.
//!
//! The model drops everything that was not made durable: a file keeps the contents it
//! had at its last fsync (none if it never had one); a directory keeps the entries it
//! had at its last fsync (a name pointing at whatever its inode held when last
//! synced); the sled index is as it was at its last flush. Directories themselves are
//! taken as durable once made (the store makes them before its first write).
//! [`record`] sees every sync point ([`super::synced`]) and keeps one image per point.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Synced;

/// Files by path relative to the store root.
type Files = Vec<(PathBuf, Vec<u8>)>;

struct Recorder {
    root: PathBuf,
    /// Contents of each inode at its last fsync.
    content: HashMap<u64, Vec<u8>>,
    /// Entries (name, inode) of each directory at its last fsync.
    dirs: HashMap<PathBuf, Vec<(std::ffi::OsString, u64)>>,
    /// The index directory's files at the last flush.
    index: Files,
    /// What a crash after each sync point would leave.
    images: Vec<Files>,
}

static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

fn files_below(root: &Path, dir: &Path, out: &mut Files) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_below(root, &p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.strip_prefix(root).unwrap_or(&p).to_path_buf(), bytes));
        }
    }
}

impl Recorder {
    fn image(&self) -> Files {
        let mut out = self.index.clone();
        for (dir, entries) in &self.dirs {
            for (name, ino) in entries {
                let rel = dir.join(name);
                let rel = rel.strip_prefix(&self.root).unwrap_or(&rel).to_path_buf();
                out.push((rel, self.content.get(ino).cloned().unwrap_or_default()));
            }
        }
        out
    }
}

/// Notes a sync point of a store under the recorder's root.
pub(crate) fn record(what: Synced<'_>) {
    let mut g = RECORDER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(r) = g.as_mut() else {
        return;
    };
    let path = match &what {
        Synced::File(p) | Synced::Dir(p) | Synced::Index(p) => *p,
    };
    if !path.starts_with(&r.root) {
        return;
    }
    match what {
        Synced::File(p) => {
            if let (Ok(m), Ok(bytes)) = (std::fs::metadata(p), std::fs::read(p)) {
                r.content.insert(m.ino(), bytes);
            }
        }
        Synced::Dir(p) => {
            let mut entries = Vec::new();
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_file() {
                        entries.push((e.file_name(), m.ino()));
                    }
                }
            }
            r.dirs.insert(p.to_path_buf(), entries);
        }
        Synced::Index(p) => {
            let mut files = Vec::new();
            files_below(&r.root, p, &mut files);
            r.index = files;
        }
    }
    if std::env::var_os("CAS_POWERLOSS_DEBUG").is_some() {
        eprintln!("point {}: {path:?}", r.images.len());
    }
    let image = r.image();
    r.images.push(image);
}

fn start(root: &Path) {
    *RECORDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Recorder {
        root: root.to_path_buf(),
        content: HashMap::new(),
        dirs: HashMap::new(),
        index: Vec::new(),
        images: Vec::new(),
    });
}

fn points() -> usize {
    RECORDER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, |r| r.images.len())
}

fn stop() -> Vec<Files> {
    RECORDER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|r| r.images)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import, ImportOptions};
    use crate::read::{resolve, write_file, Target, WriteSink};
    use crate::store::fsck::fsck;
    use crate::Store;

    fn read_back(store: &Store, spec: &str) -> crate::Result<Vec<u8>> {
        let Target::File { entry, .. } = resolve(store, spec)? else {
            panic!("{spec} is not a file");
        };
        let mut out = WriteSink(Vec::new());
        write_file(store, &entry, &mut out)?;
        Ok(out.0)
    }

    #[test]
    fn an_import_crashed_at_every_sync_point_leaves_a_sound_store() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        // Three imports; the second and third share pieces with the first.
        let shared: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut sources = Vec::new();
        for i in 0..3u8 {
            let dir = tmp.path().join(format!("src{i}"));
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("shared.bin"), &shared).unwrap();
            let own: Vec<u8> = (0..40_000u32).map(|j| (j as u8) ^ (i * 31)).collect();
            std::fs::write(dir.join("sub/own.bin"), &own).unwrap();
            sources.push((dir, own));
        }
        start(&root);
        let store = Store::open(&root, Some(16 << 10)).unwrap();
        // After import i returned, every later image must hold it whole.
        let mut done = Vec::new();
        for (i, (dir, _)) in sources.iter().enumerate() {
            let opts = ImportOptions {
                name: Some(format!("t{i}")),
                ..ImportOptions::default()
            };
            import(&store, dir, &opts, &|_| {}, &|_| {}).unwrap();
            done.push(points());
        }
        drop(store);
        let images = stop();
        assert!(images.len() >= 20, "only {} sync points", images.len());
        for (k, files) in images.iter().enumerate() {
            let at = tmp.path().join(format!("crash-{k}"));
            for (rel, bytes) in files {
                let p = at.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
            }
            if !at.join("config.json").exists() {
                continue; // before the store existed
            }
            let mut store = Store::open(&at, None)
                .unwrap_or_else(|e| panic!("crash at point {k}: the store does not open: {e}"));
            let report = fsck(&mut store, false).unwrap();
            assert!(report.is_clean(), "crash at point {k}: {report:?}");
            for (i, &n) in done.iter().enumerate() {
                let name = format!("t{i}");
                let present = store.catalog().get_ref(&name).unwrap().is_some();
                assert!(
                    present || k < n,
                    "crash at point {k}: import {i} had returned but is gone"
                );
                if present {
                    // A ref never names a tree that is not whole.
                    assert_eq!(
                        read_back(&store, &format!("{name}:shared.bin")).unwrap(),
                        shared
                    );
                    assert_eq!(
                        read_back(&store, &format!("{name}:sub/own.bin")).unwrap(),
                        sources[i].1,
                        "crash at point {k}: {name}"
                    );
                }
            }
            drop(store);
            std::fs::remove_dir_all(&at).unwrap();
        }
        eprintln!("{} crash points, every one sound", images.len());
    }
}
