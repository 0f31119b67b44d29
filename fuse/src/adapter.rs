//! The `fuser::Filesystem` over a [`ReadOnlyTree`]: FUSE requests in, tree calls out.
//!
//! Everything is read-only: the mount is made with `ro`, and the few write requests
//! the kernel still passes on are answered with `EROFS`. File contents never change
//! under an inode, so files are opened with `FOPEN_KEEP_CACHE`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

use crate::{Node, NodeKind, ReadOnlyTree, TreeError, ROOT};

/// How long the kernel may keep names and attributes. Refs can move while mounted
/// (an import through the daemon), so this stays short.
const TTL: Duration = Duration::from_secs(1);

/// The `st_blksize` reported for files: `cat` and `cp` read in blocks of this size.
const BLKSIZE: u32 = 1 << 20;

/// A directory's entries, as listed at `opendir`.
type Listing = Arc<Vec<(Vec<u8>, Node)>>;

/// The adapter itself.
pub(crate) struct Adapter {
    tree: Arc<dyn ReadOnlyTree>,
    uid: u32,
    gid: u32,
    direct_io: bool,
    /// Directory listings taken at `opendir`, so that a long listing read in many
    /// `readdir` calls is consistent and not rebuilt for every call.
    listings: Mutex<HashMap<u64, Listing>>,
    next_handle: AtomicU64,
}

impl Adapter {
    pub(crate) fn new(tree: Arc<dyn ReadOnlyTree>, direct_io: bool) -> Self {
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Adapter {
            tree,
            uid,
            gid,
            direct_io,
            listings: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    fn attr(&self, node: &Node) -> FileAttr {
        let (kind, size, nlink) = match &node.kind {
            NodeKind::Dir => (FileType::Directory, 0, 2),
            NodeKind::File { size } => (FileType::RegularFile, *size, 1),
            NodeKind::Symlink { target } => (FileType::Symlink, target.len() as u64, 1),
        };
        FileAttr {
            ino: INodeNo(node.ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: (node.mode & 0o7777) as u16,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn listing(&self, fh: FileHandle) -> Option<Listing> {
        self.listings.lock().ok()?.get(&fh.0).cloned()
    }
}

fn errno(e: &TreeError) -> Errno {
    match e {
        TreeError::NotFound => Errno::ENOENT,
        TreeError::Io(_) => Errno::EIO,
    }
}

fn file_type(kind: &NodeKind) -> FileType {
    match kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::File { .. } => FileType::RegularFile,
        NodeKind::Symlink { .. } => FileType::Symlink,
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        if self.direct_io {
            // Files opened with direct I/O may still be mapped (Linux 6.6 and later);
            // an older kernel just refuses shared mappings of them.
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        }
        Ok(())
    }

    fn lookup(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name.as_bytes()) {
            Ok(node) => reply.entry(&TTL, &self.attr(&node), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _: &Request, ino: INodeNo, _: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.node(ino.0) {
            Ok(node) => reply.attr(&TTL, &self.attr(&node)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.node(ino.0) {
            Ok(Node {
                kind: NodeKind::Symlink { target },
                ..
            }) => reply.data(&target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.tree.node(ino.0) {
            Ok(Node {
                kind: NodeKind::File { .. },
                ..
            }) => {
                let mut how = FopenFlags::FOPEN_KEEP_CACHE;
                if self.direct_io {
                    how = FopenFlags::FOPEN_DIRECT_IO;
                }
                reply.opened(FileHandle(0), how)
            }
            Ok(Node {
                kind: NodeKind::Dir,
                ..
            }) => reply.error(Errno::EISDIR),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        size: u32,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.tree.read_shared(ino.0, offset, size) {
            Ok(bytes) => reply.data(bytes.as_slice()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
        reply.ok()
    }

    fn opendir(&self, _: &Request, ino: INodeNo, _: OpenFlags, reply: ReplyOpen) {
        match self.tree.children(ino.0) {
            Ok(children) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                match self.listings.lock() {
                    Ok(mut l) => {
                        l.insert(fh, Arc::new(children));
                        reply.opened(FileHandle(fh), FopenFlags::empty())
                    }
                    Err(_) => reply.error(Errno::EIO),
                }
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(children) = self.listing(fh) else {
            return reply.error(Errno::EBADF);
        };
        // Offsets: 1 is after ".", 2 after "..", 2 + i + 1 after child i.
        let dots = [
            (ino.0, FileType::Directory, &b"."[..]),
            (ROOT, FileType::Directory, b".."),
        ];
        let entries = dots.into_iter().chain(
            children
                .iter()
                .map(|(name, node)| (node.ino, file_type(&node.kind), name.as_slice())),
        );
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok()
    }

    fn releasedir(&self, _: &Request, _: INodeNo, fh: FileHandle, _: OpenFlags, reply: ReplyEmpty) {
        if let Ok(mut l) = self.listings.lock() {
            l.remove(&fh.0);
        }
        reply.ok()
    }

    fn access(&self, _: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if mask.bits() & libc::W_OK != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.tree.node(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
