//! Tests of [`super::apply`]: a plan carried out, an edit made meanwhile kept, and
//! nothing changed outside the directory, whatever a plan says or another process
//! does to it.

use super::*;
use crate::import::{import, ImportOptions};
use crate::sync::merge::plan;
use std::cell::RefCell;

/// What another process does to the directory just before (`true`) and just
/// after (`false`) each check of a path: a test's way to change it between the
/// check and the write, at a set point rather than by timing.
type Race = Box<dyn FnMut(bool)>;

thread_local! {
    static RACE: RefCell<Option<Race>> = RefCell::new(None);
}

pub(super) fn race(before: bool) {
    RACE.with(|r| {
        if let Some(f) = r.borrow_mut().as_mut() {
            f(before)
        }
    })
}

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

/// Another process swaps `DIR/sub` for a symlink to a directory outside whenever
/// a path is checked, and back before the next check: the checks always see a
/// real directory, the writes that follow them the symlink. No step of a plan
/// below `sub` (a file, a directory and a symlink written, a file removed, a
/// conflict copy renamed) changes anything outside; each is refused, naming
/// `DIR/sub`.
#[test]
fn a_directory_swapped_for_a_symlink_between_check_and_write_is_not_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store"), Some(16 << 10)).unwrap();
    let (src, dest) = (tmp.path().join("src"), tmp.path().join("dest"));
    std::fs::create_dir_all(src.join("sub/deep")).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join("sub/old.txt"), b"old\n").unwrap();
    std::fs::write(src.join("sub/keep.txt"), b"keep\n").unwrap();
    std::fs::write(src.join("sub/deep/new.txt"), b"new\n").unwrap();
    std::os::unix::fs::symlink("old.txt", src.join("sub/link")).unwrap();
    std::fs::create_dir(src.join("sub/newdir")).unwrap();
    let remote = scan(&store, &src);
    let entry = |p: &[u8]| remote.entries.iter().find(|e| e.path == p).unwrap().clone();
    let origin = |_: &Entry| ("x".to_string(), 1);
    let empty = Manifest::default();
    let first = Manifest {
        entries: remote
            .entries
            .iter()
            .filter(|e| [&b"sub"[..], b"sub/old.txt", b"sub/keep.txt"].contains(&&e.path[..]))
            .cloned()
            .collect(),
    };
    let p = plan(&empty, &empty, &first, &origin);
    apply(&store, &dest, &p, &empty, "n", 5, &mut Ahead::none(&dest)).unwrap();

    // Outside: files of the same names, the same contents and times, as bait.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for name in ["old.txt", "keep.txt"] {
        std::fs::copy(dest.join("sub").join(name), outside.join(name)).unwrap();
        let t = std::fs::metadata(dest.join("sub").join(name))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(outside.join(name))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let listing = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let bait = listing(&outside);

    let sub = dest.join("sub");
    let moved = tmp.path().join("moved-sub");
    for step in [
        Step::Write {
            entry: entry(b"sub/deep/new.txt"),
        },
        Step::Write {
            entry: entry(b"sub/newdir"),
        },
        Step::Write {
            entry: entry(b"sub/link"),
        },
        Step::Remove {
            path: b"sub/old.txt".to_vec(),
        },
        Step::Keep {
            path: b"sub/keep.txt".to_vec(),
            to: b"sub/keep.txt.conflict-n-5".to_vec(),
        },
    ] {
        let scanned = scan(&store, &dest);
        let p = Plan {
            steps: vec![step.clone()],
            conflicts: 0,
        };
        let (s, m, o) = (sub.clone(), moved.clone(), outside.clone());
        RACE.with(|r| {
            *r.borrow_mut() = Some(Box::new(move |before| {
                let swapped = s.symlink_metadata().unwrap().file_type().is_symlink();
                if before && swapped {
                    std::fs::remove_file(&s).unwrap();
                    std::fs::rename(&m, &s).unwrap();
                } else if !before && !swapped {
                    std::fs::rename(&s, &m).unwrap();
                    std::os::unix::fs::symlink(&o, &s).unwrap();
                }
            }))
        });
        let done = apply(&store, &dest, &p, &scanned, "n", 5, &mut Ahead::none(&dest));
        RACE.with(|r| *r.borrow_mut() = None);
        if sub.symlink_metadata().unwrap().file_type().is_symlink() {
            std::fs::remove_file(&sub).unwrap();
            std::fs::rename(&moved, &sub).unwrap();
        }
        assert_eq!(
            listing(&outside),
            bait,
            "{step:?} changed the directory outside"
        );
        let err = done.expect_err(&format!("{step:?}")).to_string();
        assert!(
            err.contains(sub.to_str().unwrap()) && err.contains("symbolic link"),
            "{step:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(sub.join("old.txt")).unwrap(), b"old\n");
    assert_eq!(std::fs::read(sub.join("keep.txt")).unwrap(), b"keep\n");
}
