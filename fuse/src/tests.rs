//! Tests of the adapter: path resolution on its own, then a synthetic tree mounted for
//! real and checked the way a user would, with `std::fs`.
//!
//! Real mounts need root and /dev/fuse (CI has both); without them those tests say why on
//! stderr and pass. Every access to a mount runs on a helper thread with a deadline: a
//! hung mount fails the test, and its FUSE connection is aborted so that the stuck
//! reader and the unmount are freed.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use crate::{mount, resolve, Mount, MountOptions, Node, NodeKind, ReadOnlyTree, TreeError, ROOT};

/// How long one access to a mount may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(30);

/// The mtime of every node of [`Synthetic`].
fn mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Byte `i` of file `ino`: a multiplicative hash of the position, so that a page or a
/// request put at the wrong offset shows.
fn byte_at(ino: u64, i: u64) -> u8 {
    let x = i
        .wrapping_add(ino << 40)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

fn content(ino: u64, offset: u64, len: u64) -> Vec<u8> {
    (offset..offset + len).map(|i| byte_at(ino, i)).collect()
}

struct Item {
    parent: u64,
    name: Vec<u8>,
    node: Node,
    /// Reads fail with `TreeError::Io`.
    broken: bool,
}

/// A tree held in a table: inode `n` is row `n - 1`; files hold [`content`].
struct Synthetic {
    items: Vec<Item>,
}

/// Inode numbers and sizes of the nodes the tests look at.
struct Layout {
    hello: u64,
    big: u64,
    big_size: u64,
    nested: u64,
    nested_size: u64,
}

const BIG_SIZE: u64 = (5 << 20) + 12_345;
const NESTED_SIZE: u64 = 4097;
/// Entries of `many/`: enough for several `readdir` replies.
const MANY: usize = 1000;

impl Synthetic {
    /// ```text
    /// /hello.txt  13 bytes, 0644        /sub/nested.txt  4097 bytes, 0600
    /// /empty.txt  0 bytes               /sub/deeper/     0700, empty
    /// /big.bin    5 MiB + 12345 bytes   /link -> sub/nested.txt
    /// /broken.bin 64 KiB, reads fail    /many/f0000 .. f0999
    /// /run.sh     0755
    /// ```
    fn new() -> (Synthetic, Layout) {
        let mut t = Synthetic {
            items: vec![Item {
                parent: ROOT,
                name: Vec::new(),
                node: Node {
                    ino: ROOT,
                    kind: NodeKind::Dir,
                    mode: 0o755,
                    mtime: mtime(),
                },
                broken: false,
            }],
        };
        let file = |size| NodeKind::File { size };
        let hello = t.add(ROOT, "hello.txt", file(13), 0o644);
        t.add(ROOT, "empty.txt", file(0), 0o644);
        let big = t.add(ROOT, "big.bin", file(BIG_SIZE), 0o644);
        let broken = t.add(ROOT, "broken.bin", file(64 << 10), 0o644);
        t.items[broken as usize - 1].broken = true;
        t.add(ROOT, "run.sh", file(100), 0o755);
        let sub = t.add(ROOT, "sub", NodeKind::Dir, 0o755);
        let nested = t.add(sub, "nested.txt", file(NESTED_SIZE), 0o600);
        t.add(sub, "deeper", NodeKind::Dir, 0o700);
        let target = b"sub/nested.txt".to_vec();
        t.add(ROOT, "link", NodeKind::Symlink { target }, 0o777);
        let many = t.add(ROOT, "many", NodeKind::Dir, 0o755);
        for i in 0..MANY {
            t.add(many, &format!("f{i:04}"), file(i as u64), 0o644);
        }
        let layout = Layout {
            hello,
            big,
            big_size: BIG_SIZE,
            nested,
            nested_size: NESTED_SIZE,
        };
        (t, layout)
    }

    fn add(&mut self, parent: u64, name: &str, kind: NodeKind, mode: u32) -> u64 {
        let ino = self.items.len() as u64 + 1;
        self.items.push(Item {
            parent,
            name: name.as_bytes().to_vec(),
            node: Node {
                ino,
                kind,
                mode,
                mtime: mtime(),
            },
            broken: false,
        });
        ino
    }

    fn item(&self, ino: u64) -> Result<&Item, TreeError> {
        let i = ino.checked_sub(1).ok_or(TreeError::NotFound)?;
        self.items.get(i as usize).ok_or(TreeError::NotFound)
    }

    /// Rows under `parent`, the root's own row left out.
    fn under(&self, parent: u64) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(move |it| it.parent == parent && it.node.ino != ROOT)
    }
}

impl ReadOnlyTree for Synthetic {
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Node, TreeError> {
        self.under(parent)
            .find(|it| it.name == name)
            .map(|it| it.node.clone())
            .ok_or(TreeError::NotFound)
    }

    fn node(&self, ino: u64) -> Result<Node, TreeError> {
        Ok(self.item(ino)?.node.clone())
    }

    fn children(&self, ino: u64) -> Result<Vec<(Vec<u8>, Node)>, TreeError> {
        if self.item(ino)?.node.kind != NodeKind::Dir {
            return Err(TreeError::NotFound);
        }
        Ok(self
            .under(ino)
            .map(|it| (it.name.clone(), it.node.clone()))
            .collect())
    }

    fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>, TreeError> {
        let it = self.item(ino)?;
        let NodeKind::File { size } = it.node.kind else {
            return Err(TreeError::NotFound);
        };
        if it.broken {
            return Err(TreeError::Io("injected read failure".into()));
        }
        let end = size.min(offset.saturating_add(len.into()));
        Ok(content(ino, offset.min(end), end.saturating_sub(offset)))
    }
}

#[test]
fn resolve_walks_lookups_and_stops_at_files() {
    let (t, l) = Synthetic::new();
    assert_eq!(resolve(&t, b"/sub/nested.txt").unwrap().ino, l.nested);
    assert_eq!(resolve(&t, b"").unwrap().ino, ROOT);
    assert_eq!(resolve(&t, b"hello.txt/").unwrap().ino, l.hello);
    assert!(matches!(
        resolve(&t, b"sub/nested.txt/x"),
        Err(TreeError::NotFound)
    ));
    assert!(matches!(resolve(&t, b"nope"), Err(TreeError::NotFound)));
}

#[test]
fn synthetic_reads_stop_at_the_end_of_the_file() {
    let (t, l) = Synthetic::new();
    assert_eq!(t.read(l.hello, 0, 4096).unwrap(), content(l.hello, 0, 13));
    assert_eq!(t.read(l.hello, 10, 100).unwrap().len(), 3);
    assert!(t.read(l.hello, 13, 100).unwrap().is_empty());
    assert!(t.read(l.hello, 1 << 40, 100).unwrap().is_empty());
}

// ---- real mounts ----

fn can_mount() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting needs root (CI runs as root)");
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: mounting needs /dev/fuse");
        return false;
    }
    true
}

/// The `major:minor` of the mount at `path`, from /proc/self/mountinfo: read without
/// touching the mount, so it works even when the filesystem hangs.
fn mounted_dev(path: &Path) -> Option<(u32, u32)> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    // Fields: id, parent id, major:minor, root, mount point, ...; the last mount on a
    // path is the one seen.
    info.lines().rev().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        if f.get(4) != Some(&want) {
            return None;
        }
        let (major, minor) = f.get(2)?.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// A tree mounted on a fresh temporary directory; dropping it unmounts before the
/// directory goes.
struct Mounted {
    mount: Option<Mount>,
    /// Kept here too: the adapter's copy goes when the FUSE session ends.
    tree: Arc<Synthetic>,
    hang: Hang,
    at: PathBuf,
    _dir: TempDir,
}

impl Mounted {
    fn new(direct_io: bool) -> (Mounted, Layout) {
        let (tree, layout) = Synthetic::new();
        let tree = Arc::new(tree);
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("mnt");
        fs::create_dir(&at).unwrap();
        // As /proc/self/mountinfo will name it, whatever symlinks TMPDIR goes through.
        let at = fs::canonicalize(at).unwrap();
        let options = MountOptions {
            fs_name: "cas-fuse-test".into(),
            direct_io,
            threads: 2,
            ..MountOptions::default()
        };
        let m = mount(tree.clone(), &at, &options).expect("mounting the synthetic tree");
        let (major, conn) = mounted_dev(&at).expect("the mount is not in /proc/self/mountinfo");
        assert_eq!(major, 0, "a FUSE mount has an anonymous device");
        let hang = Hang {
            conn,
            at: at.clone(),
        };
        let mounted = Mounted {
            mount: Some(m),
            tree,
            hang,
            at,
            _dir: dir,
        };
        (mounted, layout)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.at.join(rel)
    }

    fn within<T: Send + 'static>(&self, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.hang.within(what, f)
    }
}

/// Unmounts on a helper thread too: fuser's unmount joins the threads that answer the
/// kernel, so a handler that never returns would hang it. After the deadline the mount
/// is left behind (aborted, so it frees whoever touches it).
impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mount) = self.mount.take() {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                drop(mount);
                let _ = tx.send(());
            });
            if rx.recv_timeout(DEADLINE).is_err() {
                self.hang.abort();
                eprintln!("unmounting {} hung; left it aborted", self.at.display());
            }
        }
    }
}

/// What it takes to free the threads stuck on a hung mount.
struct Hang {
    /// The FUSE connection's number (the mount's minor device).
    conn: u32,
    at: PathBuf,
}

impl Hang {
    /// Runs `f` on a helper thread. If it has not returned within [`DEADLINE`], aborts
    /// the FUSE connection, which fails the stuck calls, and fails the test.
    fn within<T: Send + 'static>(&self, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(v) => v,
            Err(_) => {
                self.abort();
                panic!("{what}: no answer from the mount within {DEADLINE:?} (connection aborted)");
            }
        }
    }

    /// Through fusectl when it is mounted, else by a forced unmount: either way the
    /// kernel aborts the connection (`umount_begin`), even when the unmount is refused.
    fn abort(&self) {
        let ctl = format!("/sys/fs/fuse/connections/{}/abort", self.conn);
        if fs::write(ctl, "1").is_ok() {
            return;
        }
        if let Ok(c) = std::ffi::CString::new(self.at.as_os_str().as_encoded_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_FORCE) };
        }
    }
}

fn errno(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn read_both_ways(direct_io: bool) {
    let (m, l) = Mounted::new(direct_io);
    let (hello, big, nested) = (m.path("hello.txt"), m.path("big.bin"), m.path("link"));
    let (got_hello, got_big, via_link) = m.within("reading files", move || {
        (
            fs::read(hello).unwrap(),
            fs::read(big).unwrap(),
            fs::read(nested).unwrap(),
        )
    });
    assert_eq!(got_hello, content(l.hello, 0, 13));
    assert_eq!(got_big.len() as u64, l.big_size);
    assert!(got_big == content(l.big, 0, l.big_size), "big.bin differs");
    assert_eq!(via_link, content(l.nested, 0, l.nested_size));

    // Reads at odd offsets, across page and request boundaries, and past the end.
    let big = m.path("big.bin");
    let size = l.big_size;
    let (reads, tail, past_end) = m.within("positioned reads", move || {
        let f = File::open(big).unwrap();
        let mut reads = Vec::new();
        for (offset, len) in [(1, 10), (4095, 2), (131_071, 5000), ((1 << 20) - 3, 6)] {
            let mut buf = vec![0; len];
            f.read_exact_at(&mut buf, offset).unwrap();
            reads.push((offset, buf));
        }
        let mut tail = vec![0; 100];
        let n = f.read_at(&mut tail, size - 7).unwrap();
        tail.truncate(n);
        let mut past = [0; 10];
        (reads, tail, f.read_at(&mut past, size + 1).unwrap())
    });
    for (offset, buf) in reads {
        assert_eq!(
            buf,
            content(l.big, offset, buf.len() as u64),
            "read at {offset}"
        );
    }
    assert_eq!(tail, content(l.big, size - 7, 7), "the last 7 bytes");
    assert_eq!(past_end, 0, "a read past the end gives nothing");
}

#[test]
fn files_read_back_through_the_page_cache() {
    if can_mount() {
        read_both_ways(false);
    }
}

#[test]
fn files_read_back_with_direct_io() {
    if can_mount() {
        read_both_ways(true);
    }
}

#[test]
fn listings_links_and_attributes_are_what_the_tree_says() {
    if !can_mount() {
        return;
    }
    let (m, l) = Mounted::new(false);
    let names = |p: PathBuf| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let (root, sub, many, deeper) = (
        m.path(""),
        m.path("sub"),
        m.path("many"),
        m.path("sub/deeper"),
    );
    let listed = m.within("listing directories", move || {
        (names(root), names(sub), names(many), names(deeper))
    });
    let expect = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        listed.0,
        expect(&[
            "big.bin",
            "broken.bin",
            "empty.txt",
            "hello.txt",
            "link",
            "many",
            "run.sh",
            "sub"
        ])
    );
    assert_eq!(listed.1, expect(&["deeper", "nested.txt"]));
    let many_names: Vec<String> = (0..MANY).map(|i| format!("f{i:04}")).collect();
    assert_eq!(listed.2, many_names, "a listing read in several replies");
    assert!(listed.3.is_empty());

    let link = m.path("link");
    let target = m.within("readlink", move || fs::read_link(link).unwrap());
    assert_eq!(target, Path::new("sub/nested.txt"));

    let paths: Vec<PathBuf> = [
        "",
        "hello.txt",
        "empty.txt",
        "big.bin",
        "run.sh",
        "sub",
        "sub/nested.txt",
        "sub/deeper",
        "link",
        "many/f0999",
    ]
    .iter()
    .map(|p| m.path(p))
    .collect();
    let metas = m.within("stat", move || {
        paths
            .iter()
            .map(|p| fs::symlink_metadata(p).unwrap())
            .collect::<Vec<_>>()
    });
    // (is_dir, is_symlink, size, permission bits), in the order of `paths`.
    let want = [
        (true, false, 0, 0o755),
        (false, false, 13, 0o644),
        (false, false, 0, 0o644),
        (false, false, l.big_size, 0o644),
        (false, false, 100, 0o755),
        (true, false, 0, 0o755),
        (false, false, l.nested_size, 0o600),
        (true, false, 0, 0o700),
        (false, true, "sub/nested.txt".len() as u64, 0o777),
        (false, false, 999, 0o644),
    ];
    for (i, (meta, (is_dir, is_link, size, mode))) in metas.iter().zip(want).enumerate() {
        assert_eq!(meta.is_dir(), is_dir, "entry {i} is_dir");
        assert_eq!(
            meta.file_type().is_symlink(),
            is_link,
            "entry {i} is_symlink"
        );
        assert_eq!(meta.is_file(), !is_dir && !is_link, "entry {i} is_file");
        if !is_dir {
            assert_eq!(meta.len(), size, "entry {i} size");
        }
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "entry {i} mode");
        assert_eq!(meta.modified().unwrap(), mtime(), "entry {i} mtime");
    }
    // Through the link: the target's attributes.
    let link = m.path("link");
    let followed = m.within("stat through a link", move || fs::metadata(link).unwrap());
    assert!(followed.is_file());
    assert_eq!(followed.len(), l.nested_size);
    assert_eq!(followed.ino(), l.nested);
}

#[test]
fn missing_names_failing_reads_and_writes_give_the_right_errors() {
    if !can_mount() {
        return;
    }
    let (m, _) = Mounted::new(false);
    let at = m.at.clone();
    let errs = m.within("failing calls", move || {
        let p = |rel: &str| at.join(rel);
        let (enoent, enotdir, eio, erofs) = (libc::ENOENT, libc::ENOTDIR, libc::EIO, libc::EROFS);
        let write = |rel: &str| OpenOptions::new().write(true).open(p(rel));
        let append = |rel: &str| OpenOptions::new().append(true).open(p(rel));
        let chmod = |rel: &str| fs::set_permissions(p(rel), fs::Permissions::from_mode(0o600));
        vec![
            ("stat missing", enoent, errno(fs::metadata(p("missing")))),
            (
                "stat missing in sub",
                enoent,
                errno(fs::metadata(p("sub/missing"))),
            ),
            ("open missing", enoent, errno(File::open(p("missing")))),
            (
                "stat below a file",
                enotdir,
                errno(fs::metadata(p("hello.txt/x"))),
            ),
            ("read broken", eio, errno(fs::read(p("broken.bin")))),
            ("create", erofs, errno(fs::write(p("new.txt"), b"x"))),
            (
                "create in sub",
                erofs,
                errno(File::create(p("sub/new.txt"))),
            ),
            ("open for writing", erofs, errno(write("hello.txt"))),
            ("open for appending", erofs, errno(append("big.bin"))),
            ("truncate", erofs, errno(File::create(p("hello.txt")))),
            ("mkdir", erofs, errno(fs::create_dir(p("newdir")))),
            ("rmdir", erofs, errno(fs::remove_dir(p("sub/deeper")))),
            ("unlink", erofs, errno(fs::remove_file(p("hello.txt")))),
            (
                "rename",
                erofs,
                errno(fs::rename(p("hello.txt"), p("bye.txt"))),
            ),
            (
                "symlink",
                erofs,
                errno(std::os::unix::fs::symlink("x", p("l2"))),
            ),
            ("chmod", erofs, errno(chmod("hello.txt"))),
        ]
    });
    for (what, want, got) in errs {
        assert_eq!(got, Some(want), "{what}: got errno {got:?}, want {want}");
    }
    // The failing file still has its attributes; only its bytes fail.
    let broken = m.path("broken.bin");
    let meta = m.within("stat broken", move || fs::metadata(broken).unwrap());
    assert_eq!(meta.len(), 64 << 10);
}

#[test]
fn dropping_the_mount_with_a_file_open_detaches_it() {
    if !can_mount() {
        return;
    }
    let (mut m, l) = Mounted::new(false);
    let big = m.path("big.bin");
    let (file, head) = m.within("open and read a little", move || {
        let mut f = File::open(big).unwrap();
        let mut head = vec![0; 4096];
        f.read_exact(&mut head).unwrap();
        (f, head)
    });
    assert_eq!(head, content(l.big, 0, 4096));

    let mount = m.mount.take().unwrap();
    m.within("dropping the mount", move || drop(mount));
    assert_eq!(mounted_dev(&m.at), None, "still in /proc/self/mountinfo");
    let (at, parent) = (m.at.clone(), m.at.parent().unwrap().to_path_buf());
    let (dev, parent_dev) = m.within("stat the mount point", move || {
        let dev = |p: PathBuf| fs::metadata(p).unwrap().dev();
        (dev(at), dev(parent))
    });
    assert_eq!(dev, parent_dev, "the mount point is still a mount");
    assert_eq!(
        Arc::strong_count(&m.tree),
        2,
        "the server stopped while a file was open"
    );

    // The open file outlives the mount: it reads on, or fails; it never hangs.
    let rest = m.within("reading the detached file", move || {
        let mut f = file;
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).map(|_| rest)
    });
    match rest {
        Ok(rest) => assert!(
            rest == content(l.big, 4096, l.big_size - 4096),
            "the detached file read back wrong bytes"
        ),
        Err(e) => eprintln!("reading the detached file failed cleanly: {e}"),
    }

    // The file is closed (the thread that read it ended): the kernel lets go of the
    // detached filesystem and the server's threads end, dropping their tree.
    let deadline = Instant::now() + DEADLINE;
    while Arc::strong_count(&m.tree) > 1 {
        assert!(
            Instant::now() < deadline,
            "the FUSE session outlived the last open file of its detached mount"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
