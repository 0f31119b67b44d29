//! The ceiling of a read through the mount: one file served from memory through the same
//! adapter and mount as `cas mount` (`cas_fuse::mount`), with nothing behind it, no
//! store, no hashing, no disk. `benches/mount.sh` reads it with `cat` beside a stored
//! file read through `cas mount`.
//!
//! ```text
//! fuse_synthetic MOUNTPOINT SIZE_MIB [page-cache]
//! ```
//!
//! Mounts a root holding `file.bin` of SIZE_MIB MiB, opened with direct I/O (or, with
//! `page-cache`, through the page cache as `cas mount` opens files), prints
//! `mounted MOUNTPOINT/file.bin` and serves until stdin closes, SIGTERM or SIGINT; then
//! unmounts and prints on stderr how many reads the kernel sent and their sizes.
//! Needs root and /dev/fuse. Run without arguments (as `cargo bench` and
//! `cargo test --all-targets` do), it only says how to use it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cas_fuse::{MountOptions, Node, NodeKind, ReadOnlyTree, TreeError, ROOT};

/// The inode of `file.bin`.
const FILE: u64 = 2;

/// Length of the buffer the file's bytes repeat: 1 MiB and a bit, so that no two
/// neighbouring requests return the same bytes.
const CYCLE: usize = (1 << 20) + 4096 + 17;

/// One file whose bytes come from a buffer filled once.
struct OneFile {
    size: u64,
    buf: Vec<u8>,
    mtime: SystemTime,
    /// Read requests seen, bytes returned, the largest request.
    reads: AtomicU64,
    bytes: AtomicU64,
    largest: AtomicU64,
}

impl OneFile {
    fn new(size: u64) -> Self {
        // xorshift64: bytes that compress to nothing, made without any I/O.
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        let buf = (0..CYCLE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        OneFile {
            size,
            buf,
            mtime: SystemTime::now(),
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        }
    }

    fn root(&self) -> Node {
        Node {
            ino: ROOT,
            kind: NodeKind::Dir,
            mode: 0o555,
            mtime: self.mtime,
        }
    }

    fn file(&self) -> Node {
        Node {
            ino: FILE,
            kind: NodeKind::File { size: self.size },
            mode: 0o444,
            mtime: self.mtime,
        }
    }
}

impl ReadOnlyTree for OneFile {
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Node, TreeError> {
        match (parent, name) {
            (ROOT, b"file.bin") => Ok(self.file()),
            _ => Err(TreeError::NotFound),
        }
    }

    fn node(&self, ino: u64) -> Result<Node, TreeError> {
        match ino {
            ROOT => Ok(self.root()),
            FILE => Ok(self.file()),
            _ => Err(TreeError::NotFound),
        }
    }

    fn children(&self, ino: u64) -> Result<Vec<(Vec<u8>, Node)>, TreeError> {
        match ino {
            ROOT => Ok(vec![(b"file.bin".to_vec(), self.file())]),
            _ => Err(TreeError::NotFound),
        }
    }

    fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>, TreeError> {
        if ino != FILE {
            return Err(TreeError::NotFound);
        }
        let end = self.size.min(offset.saturating_add(len.into()));
        let n = end.saturating_sub(offset) as usize;
        // One copy into the reply, as a real tree copies out of its chunk.
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let at = ((offset + out.len() as u64) % CYCLE as u64) as usize;
            let take = (CYCLE - at).min(n - out.len());
            out.extend_from_slice(&self.buf[at..at + take]);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.largest.fetch_max(len.into(), Ordering::Relaxed);
        Ok(out)
    }
}

fn main() {
    // `cargo bench` passes --bench; a test run passes nothing.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (mountpoint, size_mib, page_cache) = match args.as_slice() {
        [m, s] => (m, s, false),
        [m, s, mode] if mode == "page-cache" => (m, s, true),
        _ => {
            eprintln!(
                "usage: fuse_synthetic MOUNTPOINT SIZE_MIB [page-cache]\n\
                 (run by benches/mount.sh; nothing to do without arguments)"
            );
            return;
        }
    };
    let Ok(size_mib) = size_mib.parse::<u64>() else {
        eprintln!("fuse_synthetic: SIZE_MIB must be a number of MiB, not {size_mib:?}");
        std::process::exit(2);
    };
    if let Err(e) = run(PathBuf::from(mountpoint), size_mib << 20, !page_cache) {
        eprintln!("fuse_synthetic: {e:#}");
        std::process::exit(1);
    }
}

fn run(mountpoint: PathBuf, size: u64, direct_io: bool) -> anyhow::Result<()> {
    let tree = Arc::new(OneFile::new(size));
    let options = MountOptions {
        fs_name: "fuse_synthetic".into(),
        direct_io,
        ..MountOptions::default()
    };
    let mount = cas_fuse::mount(tree.clone(), &mountpoint, &options)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "mounted {}", mountpoint.join("file.bin").display())?;
    out.flush()?;
    drop(out);

    // Whichever comes first: stdin closed, SIGTERM, Ctrl-C.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = closed_rx => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    // The stdin thread may still be blocked in read: leave it behind.
    rt.shutdown_timeout(Duration::from_millis(100));

    // A reader still open makes the mount busy: `unmount` then detaches it.
    mount.unmount()?;
    let reads = tree.reads.load(Ordering::Relaxed);
    let bytes = tree.bytes.load(Ordering::Relaxed);
    let mean_kib = bytes.checked_div(reads).unwrap_or(0) >> 10;
    eprintln!(
        "fuse_synthetic ({}): {reads} read requests, {} MiB, mean {mean_kib} KiB, largest {} KiB",
        if direct_io {
            "direct I/O"
        } else {
            "page cache"
        },
        bytes >> 20,
        tree.largest.load(Ordering::Relaxed) >> 10,
    );
    Ok(())
}
