//! Mounting and unmounting: a [`Mount`] lives as long as the filesystem is mounted.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::adapter::Adapter;
use crate::ReadOnlyTree;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// The source shown in `mount` and `/proc/mounts`.
    pub fs_name: String,
    /// Let other users than the one mounting read the files.
    pub allow_other: bool,
    /// Threads answering the kernel: a read that waits for a piece holds one.
    pub threads: usize,
    /// Open files with direct I/O: 1 MiB reads straight to the reader, no page cache.
    pub direct_io: bool,
    /// The kernel's readahead for the mount, in KiB (it sets the size of the reads the
    /// filesystem sees: 128 KiB by default, up to 1 MiB).
    pub read_ahead_kb: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fs_name: "cas".into(),
            allow_other: false,
            threads: 4,
            direct_io: false,
            read_ahead_kb: 4096,
        }
    }
}

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: {source}", path.display())]
    Mountpoint { path: PathBuf, source: io::Error },
    #[error("mounting on {}: {source} (FUSE needs /dev/fuse and root, or fusermount3)", path.display())]
    Fuse { path: PathBuf, source: io::Error },
}

/// A mounted tree. Dropping it unmounts; if files are still open there, the mount is
/// detached and goes away when they are closed.
pub struct Mount {
    session: Option<BackgroundSession>,
    path: PathBuf,
}

impl Mount {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts and waits for the filesystem's threads to finish. Files still open
    /// make the mount busy: then it is detached instead.
    pub fn unmount(mut self) -> io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            // Busy, most likely: detach; the session thread ends when the kernel lets go.
            Err(_) => detach(&self.path),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Mounts `tree` read-only on `mountpoint`, served by background threads.
pub fn mount(
    tree: Arc<dyn ReadOnlyTree>,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<Mount, MountError> {
    let meta = std::fs::metadata(mountpoint).map_err(|source| MountError::Mountpoint {
        path: mountpoint.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(mountpoint.to_path_buf()));
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(options.fs_name.clone()),
        MountOption::Subtype("cas".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(options.threads.max(1));
    let adapter = Adapter::new(tree, options.direct_io);
    let session =
        fuser::spawn_mount(adapter, mountpoint, &config).map_err(|source| MountError::Fuse {
            path: mountpoint.to_path_buf(),
            source,
        })?;
    let m = Mount {
        session: Some(session),
        path: mountpoint.to_path_buf(),
    };
    // Best effort: without it reads arrive in 128 KiB requests, which is slower but
    // correct (the knob is root's).
    let _ = set_read_ahead(mountpoint, options.read_ahead_kb);
    Ok(m)
}

/// Sets the readahead of the filesystem mounted at `path`, through its backing device
/// info in sysfs.
fn set_read_ahead(path: &Path, kb: u32) -> io::Result<()> {
    let dev = std::fs::metadata(path)?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    std::fs::write(
        format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"),
        kb.to_string(),
    )
}

/// Detaches the mount at `path` at once; it goes away when the last open file closes.
pub fn detach(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True if `path` is a mount whose server is gone: "Transport endpoint is not connected".
/// Asks with statfs(2), which always reaches the filesystem (attributes may be cached).
pub fn is_stale_mount(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated and `buf` is a properly sized, writable statfs.
    let r = unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut buf)
    };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
}
