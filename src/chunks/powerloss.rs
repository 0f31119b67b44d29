//! The power-loss model: what a crash at each sync point of the store would leave,
//! and a test that imports with a crash at every one of them.
//!
//! The model drops everything that was not made durable: a file keeps the contents it
//! had at its last fsync (none if it never had one); a directory keeps the entries it
//! had at its last fsync (a name pointing at whatever its inode held when last
//! synced); the sled index is as it was at its last flush; a file system sync
//! (`syncfs`) of the store keeps every file's contents and every directory's entries
//! below the root as they are then (the index aside: sled's own flush says what of it
//! counts). Directories themselves are taken as durable once made (the store makes
//! them before its first write).
//! [`record`] sees every sync point ([`super::synced`]) and keeps one image per point.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Synced;

/// Files by path relative to the store root.
pub(crate) type Files = Vec<(PathBuf, Vec<u8>)>;

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
    /// Notes a directory's entries as durable.
    fn sync_dir(&mut self, p: &Path) {
        let mut entries = Vec::new();
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_file() {
                    entries.push((e.file_name(), m.ino()));
                }
            }
        }
        self.dirs.insert(p.to_path_buf(), entries);
    }

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
        Synced::File(p) | Synced::Dir(p) | Synced::Index(p) | Synced::FileSystem(p) => *p,
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
        Synced::Dir(p) => r.sync_dir(p),
        Synced::FileSystem(p) => {
            let index = r.root.join("index");
            let mut dirs = vec![p.to_path_buf()];
            while let Some(d) = dirs.pop() {
                if d == index {
                    continue;
                }
                r.sync_dir(&d);
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let Ok(m) = e.metadata() else { continue };
                    if m.is_dir() {
                        dirs.push(e.path());
                    } else if let (true, Ok(bytes)) = (m.is_file(), std::fs::read(e.path())) {
                        r.content.insert(m.ino(), bytes);
                    }
                }
            }
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

pub(crate) fn start(root: &Path) {
    *RECORDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Recorder {
        root: root.to_path_buf(),
        content: HashMap::new(),
        dirs: HashMap::new(),
        index: Vec::new(),
        images: Vec::new(),
    });
}

pub(crate) fn points() -> usize {
    RECORDER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, |r| r.images.len())
}

pub(crate) fn stop() -> Vec<Files> {
    RECORDER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|r| r.images)
        .unwrap_or_default()
}
