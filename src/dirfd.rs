//! Directory handles: everything below a directory reached relative to an open
//! descriptor of it, one component at a time, never through a symlink.
//!
//! A check of a path ("no component is a symlink") is true only when it is made;
//! another process may swap a directory for a symlink between the check and the
//! write, and a write by path then lands wherever the symlink points. A [`Dir`]
//! holds the directory open instead: each name below it is looked up from its
//! descriptor (`openat`, `mkdirat`, `symlinkat`, ...) with `O_NOFOLLOW`, so a symlink
//! met on the way is an error naming it, never followed. Export, adoption (reading
//! `--data`) and a sync's apply go through it.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

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

    /// The open directory itself (to set its mode and times, or fsync it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Its path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The status of `name`, not following a symlink.
    pub(crate) fn stat(&self, name: &OsStr) -> std::io::Result<libc::stat> {
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

    /// Opens the directory `name` below this one, not following a symlink.
    fn open_dir(&self, name: &OsStr) -> std::io::Result<Dir> {
        let c = c_name(name)?;
        // SAFETY: a directory descriptor we own and a valid name.
        let file = fd_or_error(unsafe {
            libc::openat(
                self.file.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        Ok(Dir {
            file,
            path: self.join(name),
        })
    }

    /// Opens the directory `name` below this one; a symlink there is refused.
    pub(crate) fn dir(&self, name: &OsStr) -> Result<Dir> {
        self.open_dir(name)
            .map_err(|e| self.open_error(name, e, "a directory"))
    }

    /// Opens the directory `name` below this one if there is one: `None` when
    /// nothing is there, or something that is not a directory (so nothing below it
    /// either). A symlink there is refused.
    pub(crate) fn dir_if_any(&self, name: &OsStr) -> Result<Option<Dir>> {
        let err = match self.open_dir(name) {
            Ok(d) => return Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => e,
        };
        if !matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
            return Err(Error::io(self.join(name), "open")(err));
        }
        match self.stat(name) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                Err(self.wrong_kind(name, st.st_mode, "a directory"))
            }
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A directory again, or unreadable: changed under us.
            _ => Err(Error::io(self.join(name), "open")(err)),
        }
    }

    /// Opens the directory at `rel` (components below this one) if it is there,
    /// each component with [`Dir::dir_if_any`].
    pub(crate) fn walk_if_any<'a>(
        &self,
        rel: impl IntoIterator<Item = &'a OsStr>,
    ) -> Result<Option<Dir>> {
        let mut cur = self.try_clone()?;
        for c in rel {
            match cur.dir_if_any(c)? {
                Some(next) => cur = next,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Opens the directory at `rel`, making each component that is missing
    /// (`mode` before the umask), as `mkdir -p` does but through handles.
    pub(crate) fn make_dirs<'a>(
        &self,
        rel: impl IntoIterator<Item = &'a OsStr>,
        mode: libc::mode_t,
    ) -> Result<Dir> {
        let mut cur = self.try_clone()?;
        for c in rel {
            cur.mkdir(c, mode)?;
            cur = cur.dir(c)?;
        }
        Ok(cur)
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

    /// Makes the symlink `name` pointing at `target`, with the mtime `secs`, `nanos`
    /// (since the epoch).
    pub(crate) fn symlink(
        &self,
        target: &OsStr,
        name: &OsStr,
        secs: i64,
        nanos: u32,
    ) -> Result<()> {
        let path = self.join(name);
        let (t, c) = (
            c_name(target).map_err(Error::io(&path, "create symlink"))?,
            c_name(name).map_err(Error::io(&path, "create symlink"))?,
        );
        // SAFETY: valid NUL-terminated strings and a directory descriptor we own.
        zero_or_error(unsafe { libc::symlinkat(t.as_ptr(), self.file.as_raw_fd(), c.as_ptr()) })
            .map_err(Error::io(&path, "create symlink"))?;
        let ts = libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos.into(),
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

    /// Renames `name` to `to_name` in the directory `to` (`renameat`): neither
    /// name is followed if it is a symlink.
    pub(crate) fn rename(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> std::io::Result<()> {
        let (from, dest) = (c_name(name)?, c_name(to_name)?);
        // SAFETY: two directory descriptors we own and valid names.
        zero_or_error(unsafe {
            libc::renameat(
                self.file.as_raw_fd(),
                from.as_ptr(),
                to.file.as_raw_fd(),
                dest.as_ptr(),
            )
        })
    }

    /// Removes `name`, anything but a directory (a symlink itself, not its target).
    pub(crate) fn remove(&self, name: &OsStr) -> std::io::Result<()> {
        self.unlink(name, 0)
    }

    /// Removes the empty directory `name`.
    pub(crate) fn remove_dir(&self, name: &OsStr) -> std::io::Result<()> {
        self.unlink(name, libc::AT_REMOVEDIR)
    }

    fn unlink(&self, name: &OsStr, flags: libc::c_int) -> std::io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: a directory descriptor we own and a valid name.
        zero_or_error(unsafe { libc::unlinkat(self.file.as_raw_fd(), c.as_ptr(), flags) })
    }

    /// The target of the symlink `name`.
    pub(crate) fn read_link(&self, name: &OsStr) -> std::io::Result<Vec<u8>> {
        let c = c_name(name)?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: a directory descriptor we own, a valid name, and a buffer of
            // `buf.len()` bytes to fill.
            let n = unsafe {
                libc::readlinkat(
                    self.file.as_raw_fd(),
                    c.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(buf);
            }
            // Perhaps cut short: again with room to spare.
            buf.resize(buf.len() * 2, 0);
        }
    }

    /// Makes the entries of this directory durable (fsync).
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(Error::io(&self.path, "sync directory"))
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

/// A path (of a manifest, of a plan) split into its parent's components and its
/// last name.
pub(crate) fn split(path: &[u8]) -> (Vec<&OsStr>, &OsStr) {
    let mut parts: Vec<&OsStr> = path.split(|&b| b == b'/').map(OsStr::from_bytes).collect();
    let last = parts.pop().unwrap_or_default();
    (parts, last)
}
