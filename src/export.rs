//! `cas export`: writes a tree out as files, byte-identical, with modes, mtimes,
//! symlinks and empty directories; all-zero pieces become holes.
//!
//! The destination must be new or empty. Paths come from a validated manifest
//! (relative, no `..`, nothing below a symlink), and everything is made relative to
//! a handle on its parent directory ([`Dir`]: `openat`, `mkdirat`, `symlinkat`),
//! opened one component at a time from the destination down with `O_NOFOLLOW`; files
//! are created with `O_EXCL`. So an export never writes outside its directory, even
//! when another process swaps one of its directories for a symlink meanwhile.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::manifest::{Entry, EntryKind};
use crate::meta::parse::Metainfo;
use crate::read::{load_manifest, write_file, Sink};
use crate::store::Store;
use crate::{Error, InfoHash, Result, TreeId};

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

struct SparseFile<'a> {
    file: &'a mut File,
    written: u64,
}

impl Sink for SparseFile<'_> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.written += bytes.len() as u64;
        self.file.write_all(bytes)
    }
    fn zeros(&mut self, len: u64) -> std::io::Result<()> {
        self.written += len;
        self.file.seek(SeekFrom::Current(len as i64)).map(|_| ())
    }
}

pub(crate) fn mtime(e: &Entry) -> SystemTime {
    let d = Duration::new(e.mtime_secs.unsigned_abs(), e.mtime_nanos.min(999_999_999));
    if e.mtime_secs >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

pub(crate) fn set_symlink_mtime(path: &Path, e: &Entry) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let ts = libc::timespec {
        tv_sec: e.mtime_secs as libc::time_t,
        tv_nsec: e.mtime_nanos.into(),
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two valid timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What a file type is, in words, for errors.
fn kind_of(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFREG => "a regular file",
        _ => "a file of an unknown type",
    }
}

fn c_name(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput.into())
}

/// What an `openat`-style call returned: a file descriptor, or the error.
fn fd_or_error(fd: libc::c_int) -> std::io::Result<File> {
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: a descriptor the kernel just handed to this process, owned by none.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

fn zero_or_error(r: libc::c_int) -> std::io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A directory held open: every name below it is looked up relative to its handle
/// (`openat`, `mkdirat`, ...), one component at a time, and never through a symlink,
/// so that another process that swaps a directory for a symlink meanwhile gets an
/// error, not a write (or a read) outside.
pub(crate) struct Dir {
    file: File,
    path: PathBuf,
}

impl Dir {
    /// Opens `path`, the directory given (which may itself be a symlink: the user
    /// chose it).
    pub(crate) fn open(path: &Path) -> Result<Dir> {
        let c = c_name(path.as_os_str()).map_err(Error::io(path, "open directory"))?;
        // SAFETY: `c` is a valid NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        let file = fd_or_error(fd).map_err(Error::io(path, "open directory"))?;
        Ok(Dir {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The status of `name`, not following a symlink.
    fn stat(&self, name: &OsStr) -> std::io::Result<libc::stat> {
        let c = c_name(name)?;
        // SAFETY: an all-zero `stat` is a valid value for fstatat to fill in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a directory descriptor we own, a valid name and a `stat` to fill.
        let r = unsafe {
            libc::fstatat(
                self.file.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        zero_or_error(r).map(|()| st)
    }

    /// The error for `name`, which is not what was wanted (`wanted`: "a directory",
    /// "a regular file"), saying what it is.
    fn wrong_kind(&self, name: &OsStr, mode: libc::mode_t, wanted: &str) -> Error {
        let is = kind_of(mode);
        let reason = if mode & libc::S_IFMT == libc::S_IFLNK {
            format!("is {is}, where {wanted} was wanted: not followed")
        } else {
            format!("is {is}, not {wanted}")
        };
        Error::BadInput {
            path: self.join(name),
            reason,
        }
    }

    /// Turns the error of an open that wanted `wanted` into one that says what
    /// `name` is when it is the wrong kind (a symlink above all).
    fn open_error(&self, name: &OsStr, err: std::io::Error, wanted: &str) -> Error {
        if matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
            if let Ok(st) = self.stat(name) {
                if st.st_mode & libc::S_IFMT == libc::S_IFLNK
                    || err.raw_os_error() == Some(libc::ENOTDIR)
                {
                    return self.wrong_kind(name, st.st_mode, wanted);
                }
            }
        }
        Error::io(self.join(name), "open")(err)
    }

    /// Opens the directory `name` below this one; a symlink there is refused.
    pub(crate) fn dir(&self, name: &OsStr) -> Result<Dir> {
        let opened = c_name(name).and_then(|c| {
            // SAFETY: a directory descriptor we own and a valid name.
            fd_or_error(unsafe {
                libc::openat(
                    self.file.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })
        });
        match opened {
            Ok(file) => Ok(Dir {
                file,
                path: self.join(name),
            }),
            Err(e) => Err(self.open_error(name, e, "a directory")),
        }
    }

    /// Opens the directory at `rel` (components below this one), each component
    /// with [`Dir::dir`].
    pub(crate) fn walk<'a>(&self, rel: impl IntoIterator<Item = &'a OsStr>) -> Result<Dir> {
        let mut cur: Option<Dir> = None;
        for c in rel {
            let next = cur.as_ref().unwrap_or(self).dir(c)?;
            cur = Some(next);
        }
        match cur {
            Some(d) => Ok(d),
            None => self.try_clone(),
        }
    }

    fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            file: self
                .file
                .try_clone()
                .map_err(Error::io(&self.path, "open directory"))?,
            path: self.path.clone(),
        })
    }

    /// Makes the directory `name` (`mode` before the umask). Returns false if a
    /// directory is there already; anything else there is an error saying what.
    pub(crate) fn mkdir(&self, name: &OsStr, mode: libc::mode_t) -> Result<bool> {
        let made = c_name(name).and_then(|c| {
            // SAFETY: a directory descriptor we own and a valid name.
            zero_or_error(unsafe { libc::mkdirat(self.file.as_raw_fd(), c.as_ptr(), mode) })
        });
        match made {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => match self.stat(name) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(false),
                Ok(st) => Err(self.wrong_kind(name, st.st_mode, "a directory")),
                Err(e) => Err(Error::io(self.join(name), "create directory")(e)),
            },
            Err(e) => Err(Error::io(self.join(name), "create directory")(e)),
        }
    }

    /// Creates the new file `name`, never through a symlink and never over anything.
    pub(crate) fn create(&self, name: &OsStr) -> Result<File> {
        let mode: libc::c_uint = 0o666;
        c_name(name)
            .and_then(|c| {
                // SAFETY: a directory descriptor we own and a valid name.
                fd_or_error(unsafe {
                    libc::openat(
                        self.file.as_raw_fd(),
                        c.as_ptr(),
                        libc::O_WRONLY
                            | libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        mode,
                    )
                })
            })
            .map_err(Error::io(self.join(name), "create file"))
    }

    /// Opens the regular file `name` for reading. Anything else there (a symlink, a
    /// FIFO, a device) is refused with an error naming it and saying what it is,
    /// and nothing opened blocks (`O_NONBLOCK`, then checked).
    pub(crate) fn open_file(&self, name: &OsStr) -> Result<File> {
        let st = self
            .stat(name)
            .map_err(Error::io(self.join(name), "open"))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.wrong_kind(name, st.st_mode, "a regular file"));
        }
        let file = c_name(name)
            .and_then(|c| {
                // SAFETY: a directory descriptor we own and a valid name.
                fd_or_error(unsafe {
                    libc::openat(
                        self.file.as_raw_fd(),
                        c.as_ptr(),
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
                    )
                })
            })
            .map_err(|e| self.open_error(name, e, "a regular file"))?;
        check_regular(&file, &self.join(name))?;
        Ok(file)
    }

    /// Makes the symlink `name` pointing at `target`, with the entry's mtime.
    pub(crate) fn symlink(&self, target: &OsStr, name: &OsStr, e: &Entry) -> Result<()> {
        let path = self.join(name);
        let (t, c) = (
            c_name(target).map_err(Error::io(&path, "create symlink"))?,
            c_name(name).map_err(Error::io(&path, "create symlink"))?,
        );
        // SAFETY: valid NUL-terminated strings and a directory descriptor we own.
        zero_or_error(unsafe { libc::symlinkat(t.as_ptr(), self.file.as_raw_fd(), c.as_ptr()) })
            .map_err(Error::io(&path, "create symlink"))?;
        let ts = libc::timespec {
            tv_sec: e.mtime_secs as libc::time_t,
            tv_nsec: e.mtime_nanos.into(),
        };
        let times = [ts, ts];
        // SAFETY: as above, and two valid timespecs.
        zero_or_error(unsafe {
            libc::utimensat(
                self.file.as_raw_fd(),
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(Error::io(&path, "set mtime"))
    }

    /// Gives this directory the entry's mtime and mode.
    fn finish(&self, e: &Entry) -> Result<()> {
        self.file
            .set_modified(mtime(e))
            .map_err(Error::io(&self.path, "set mtime"))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(e.mode))
            .map_err(Error::io(&self.path, "set mode"))
    }
}

/// Refuses `file` (at `path`) unless it is a regular file.
pub(crate) fn check_regular(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().map_err(Error::io(path, "read metadata"))?;
    if m.is_file() {
        Ok(())
    } else {
        Err(Error::BadInput {
            path: path.to_path_buf(),
            reason: format!("is {}, not a regular file", kind_of(m.mode())),
        })
    }
}

/// A manifest path split into its parent's components and its last name.
fn split_path(path: &[u8]) -> (Vec<&OsStr>, &OsStr) {
    let mut parts: Vec<&OsStr> = path.split(|&b| b == b'/').map(OsStr::from_bytes).collect();
    let last = parts.pop().unwrap_or_default();
    (parts, last)
}

/// Creates a new file, never through a symlink and never over anything.
pub(crate) fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(Error::io(path, "create file"))
}

/// Writes a file entry's content into `file` (at `path`, for errors), checked
/// against its content hash; zeros become holes. Then its length, mode and mtime,
/// and fsync.
pub(crate) fn fill_file(store: &Store, e: &Entry, file: &mut File, path: &Path) -> Result<()> {
    let EntryKind::File { size, .. } = &e.kind else {
        return Err(Error::Invalid(format!("{} is not a file", e.path_lossy())));
    };
    let mut sink = SparseFile { file, written: 0 };
    write_file(store, e, &mut sink).map_err(|err| match err {
        Error::Io { err, .. } => Error::io(path, "write")(err),
        other => other,
    })?;
    file.set_len(*size).map_err(Error::io(path, "set length"))?;
    file.set_permissions(std::fs::Permissions::from_mode(e.mode))
        .map_err(Error::io(path, "set mode"))?;
    file.set_modified(mtime(e))
        .map_err(Error::io(path, "set mtime"))?;
    file.sync_all().map_err(Error::io(path, "sync"))
}

/// Makes `dest` an empty directory, refusing one that has entries.
fn prepare(dest: &Path) -> Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(Error::BadInput {
                    path: dest.to_path_buf(),
                    reason: "export destination is not empty".into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(Error::io(dest, "create directory"))?;
        }
        Err(e) => return Err(Error::io(dest, "open export destination")(e)),
    }
    Ok(())
}

/// Exports `tree` into `dest`, which must not exist or be an empty directory.
pub fn export(store: &Store, tree: &TreeId, dest: &Path) -> Result<ExportReport> {
    let manifest = load_manifest(store, tree)?;
    prepare(dest)?;
    write_tree(store, &manifest, dest)
}

/// Writes the entries of `manifest` under `dest`, an empty directory, through
/// directory handles from `dest` down ([`Dir`]).
fn write_tree(
    store: &Store,
    manifest: &crate::manifest::Manifest,
    dest: &Path,
) -> Result<ExportReport> {
    let root = Dir::open(dest)?;
    let mut report = ExportReport::default();
    let mut dirs: Vec<&Entry> = Vec::new();
    // The parent of the last entry, open: entries come sorted, siblings together.
    let mut cached: Option<(Vec<&OsStr>, Dir)> = None;
    for e in &manifest.entries {
        let (parent, name) = split_path(&e.path);
        let hit = cached.as_ref().is_some_and(|(p, _)| *p == parent);
        if !hit {
            let d = root.walk(parent.iter().copied())?;
            cached = Some((parent, d));
        }
        let Some((_, dir)) = &cached else {
            continue;
        };
        match &e.kind {
            EntryKind::Dir => {
                // Owner-only until its contents are written; its mode comes last.
                dir.mkdir(name, 0o700)?;
                dirs.push(e);
                report.dirs += 1;
            }
            EntryKind::Symlink { target } => {
                dir.symlink(OsStr::from_bytes(target), name, e)?;
                report.symlinks += 1;
            }
            EntryKind::File { size, .. } => {
                let mut file = dir.create(name)?;
                fill_file(store, e, &mut file, &dir.join(name))?;
                report.files += 1;
                report.bytes += size;
            }
        }
    }
    drop(cached);
    // Directories last, deepest first, so that writing their contents does not change
    // their mtimes and a read-only directory does not block its own contents.
    for e in dirs.iter().rev() {
        let (parent, name) = split_path(&e.path);
        root.walk(parent.into_iter().chain([name]))?.finish(e)?;
    }
    Ok(report)
}

/// Exports any stored torrent into `dest` (new or empty) with the file names its
/// .torrent gives (a multi-file torrent in a directory of its name, as BitTorrent
/// clients do); pad files are left out. The names were checked when the torrent
/// was parsed, and files are created with `O_EXCL | O_NOFOLLOW`.
pub fn export_torrent(store: &Store, ih: &InfoHash, dest: &Path) -> Result<ExportReport> {
    let record = crate::read::torrent(store, ih)?;
    let meta = Metainfo::parse(&record.metainfo).map_err(|e| Error::Corrupt {
        path: store.root().join("torrents").join(ih.to_hex()),
        reason: e.to_string(),
    })?;
    prepare(dest)?;
    write_torrent(store, ih, &record, &meta, dest)
}

/// Writes the files of a torrent under `dest`, an empty directory.
fn write_torrent(
    store: &Store,
    ih: &InfoHash,
    record: &crate::catalog::TorrentRecord,
    meta: &Metainfo,
    dest: &Path,
) -> Result<ExportReport> {
    let root = Dir::open(dest)?;
    let mut report = ExportReport::default();
    let plen = u64::from(record.piece_length);
    for f in meta.files.iter().filter(|f| !f.pad) {
        // A multi-file torrent's files live in a directory named after the torrent.
        let mut comps: Vec<&OsStr> = Vec::new();
        if !meta.single_file {
            comps.push(OsStr::new(&meta.name));
        }
        comps.extend(f.path.iter().map(OsStr::new));
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        let mut dir: Option<Dir> = None;
        for c in parents {
            let at = dir.as_ref().unwrap_or(&root);
            if at.mkdir(c, 0o777)? {
                report.dirs += 1;
            }
            let next = at.dir(c)?;
            dir = Some(next);
        }
        let dir = dir.as_ref().unwrap_or(&root);
        let path = dir.join(name);
        let mut file = dir.create(name)?;
        let (mut at, end) = (f.offset, f.offset + f.length);
        let mut out = SparseFile {
            file: &mut file,
            written: 0,
        };
        while at < end {
            let piece = (at / plen) as usize;
            let id = record.pieces.get(piece).ok_or_else(|| Error::Corrupt {
                path: store.root().join("torrents").join(ih.to_hex()),
                reason: format!("piece {piece} is missing from the record"),
            })?;
            let within = (at % plen) as usize;
            let take = ((end - at) as usize).min(plen as usize - within);
            let entry = store.entry(id)?.ok_or(Error::MissingChunk(*id))?;
            let sent = if entry.stored == 0 {
                // An all-zero piece: a hole.
                out.zeros(take as u64)
            } else {
                let chunk = store.read_at(*id, &entry)?;
                let (data, zeros) = crate::store::content::piece_bytes(chunk.bytes(), within, take);
                out.data(data).and_then(|()| out.zeros(zeros as u64))
            };
            sent.map_err(Error::io(&path, "write"))?;
            at += take as u64;
        }
        // A file that ends in a hole gets its length.
        file.set_len(f.length)
            .map_err(Error::io(&path, "set length"))?;
        file.sync_all().map_err(Error::io(&path, "sync"))?;
        report.files += 1;
        report.bytes += f.length;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import, ImportOptions};

    /// A store holding a directory `pack` with `sub/x.txt` and `sub/y.txt`.
    fn stored() -> (tempfile::TempDir, Store, TreeId, InfoHash) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
        let src = tmp.path().join("pack");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/x.txt"), b"x marks the spot\n").unwrap();
        std::fs::write(src.join("sub/y.txt"), b"why\n").unwrap();
        let opts = ImportOptions {
            name: Some("pack".into()),
            ..Default::default()
        };
        let r = import(&store, &src, &opts, &|_| {}, &|_| {}).unwrap();
        let ih = store
            .catalog()
            .tree(&r.tree)
            .unwrap()
            .unwrap()
            .directory
            .unwrap();
        (tmp, store, r.tree, ih)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Another process swaps a directory of the destination for a symlink while an
    /// export runs; here the symlink is there before the files are written, the
    /// simplest deterministic form of that race.
    #[test]
    fn an_export_never_writes_through_a_symlink_swapped_into_its_destination() {
        let (tmp, store, tree, ih) = stored();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();

        // A torrent's files go under a directory of its name: that one is swapped.
        let record = crate::read::torrent(&store, &ih).unwrap();
        let meta = Metainfo::parse(&record.metainfo).unwrap();
        let dest = tmp.path().join("t");
        prepare(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join(&meta.name)).unwrap();
        let err = write_torrent(&store, &ih, &record, &meta, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            entries(&outside).is_empty(),
            "written outside: {:?}",
            entries(&outside)
        );
        assert!(
            err.contains(dest.join(&meta.name).to_str().unwrap()) && err.contains("symbolic link"),
            "{err}"
        );

        // A tree's directory.
        let manifest = load_manifest(&store, &tree).unwrap();
        let dest = tmp.path().join("d");
        prepare(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        let err = write_tree(&store, &manifest, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            entries(&outside).is_empty(),
            "written outside: {:?}",
            entries(&outside)
        );
        assert!(
            err.contains(dest.join("sub").to_str().unwrap()) && err.contains("symbolic link"),
            "{err}"
        );
    }
}
