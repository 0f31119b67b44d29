//! The three-way merge of a directory: what this node has (`local`), what the update
//! says (`remote`), and the tree both came from (`base`).
//!
//! A path changed on one side only takes that side. A path changed on both sides to
//! different things takes the remote version, and the local one is kept beside it as
//! a conflict copy: nothing a user wrote is ever lost. A file deleted on one side and
//! changed on the other is kept, changed. Entries are compared by what they hold
//! (kind, content, link target, mode), not by mtime.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::{Entry, EntryKind, Manifest};

/// One step of applying a merge to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Move the local entry at `path` aside to `to` (a conflict copy).
    Keep { path: Vec<u8>, to: Vec<u8> },
    /// Remove the local entry (a file, a symlink, or a directory once empty).
    Remove { path: Vec<u8> },
    /// Make the entry as the remote tree has it (replacing what is there).
    Write { entry: Entry },
}

/// What to do, in order: conflict copies, then removals (deepest first), then writes
/// (parents first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Paths kept as conflict copies.
    pub conflicts: usize,
}

/// Whether two entries hold the same thing (mtime aside).
pub fn same(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.mode == b.mode && same_kind(&a.kind, &b.kind),
        _ => false,
    }
}

fn same_kind(a: &EntryKind, b: &EntryKind) -> bool {
    match (a, b) {
        (EntryKind::Dir, EntryKind::Dir) => true,
        (
            EntryKind::File {
                size: sa,
                content: ca,
                ..
            },
            EntryKind::File {
                size: sb,
                content: cb,
                ..
            },
        ) => sa == sb && ca == cb,
        (EntryKind::Symlink { target: ta }, EntryKind::Symlink { target: tb }) => ta == tb,
        _ => false,
    }
}

fn by_path(m: &Manifest) -> BTreeMap<&[u8], &Entry> {
    m.entries.iter().map(|e| (e.path.as_slice(), e)).collect()
}

/// The name of the conflict copy of `path`: `path.conflict-<node>-<time>`, in the
/// same directory whatever `node` is: a byte of it that may not be in a node name
/// ([`crate::channel::check_node_name`]), a `/` above all, becomes `_`.
pub fn conflict_name(path: &[u8], node: &str, time: u64) -> Vec<u8> {
    let node: String = node
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    let mut p = path.to_vec();
    p.extend_from_slice(format!(".conflict-{node}-{time}").as_bytes());
    p
}

/// Plans bringing `local` to `remote`, keeping local changes made since `base`.
/// `copy_origin` names the node and time a local entry's version came from, for its
/// conflict copy's name.
pub fn plan(
    base: &Manifest,
    local: &Manifest,
    remote: &Manifest,
    copy_origin: &dyn Fn(&Entry) -> (String, u64),
) -> Plan {
    let (b, l, r) = (by_path(base), by_path(local), by_path(remote));
    let paths: BTreeSet<&[u8]> = b.keys().chain(l.keys()).chain(r.keys()).copied().collect();
    let mut keeps = Vec::new();
    let mut removes = Vec::new();
    let mut writes = Vec::new();
    // Below a local directory moved aside, nothing is to be removed or kept again.
    let mut moved: Vec<Vec<u8>> = Vec::new();
    let below = |moved: &[Vec<u8>], p: &[u8]| {
        moved
            .iter()
            .any(|m| p.len() > m.len() && p.starts_with(m) && p[m.len()] == b'/')
    };
    for p in paths {
        let (be, le, re) = (b.get(p).copied(), l.get(p).copied(), r.get(p).copied());
        if same(le, re) {
            // Equal already; a directory's or file's mtime is not worth a write.
            continue;
        }
        if same(le, be) {
            // Unchanged here: take the remote side.
            match re {
                Some(e) => writes.push(e.clone()),
                None => {
                    if !below(&moved, p) {
                        removes.push(p.to_vec())
                    }
                }
            }
            continue;
        }
        if same(re, be) {
            // Changed here only: keep it.
            continue;
        }
        // Changed on both sides.
        match (le, re) {
            // Changed here, deleted there: the change is kept.
            (Some(_), None) => {}
            // Deleted here, changed there: the change arrives.
            (None, Some(e)) => writes.push(e.clone()),
            (Some(le), Some(re)) => {
                if matches!((&le.kind, &re.kind), (EntryKind::Dir, EntryKind::Dir)) {
                    // Two modes for one directory: the remote one wins, nothing is lost.
                    writes.push(re.clone());
                    continue;
                }
                if !below(&moved, p) {
                    let (node, time) = copy_origin(le);
                    keeps.push((p.to_vec(), conflict_name(p, &node, time)));
                    if matches!(le.kind, EntryKind::Dir) {
                        moved.push(p.to_vec());
                    }
                }
                writes.push(re.clone());
            }
            (None, None) => {}
        }
    }
    let conflicts = keeps.len();
    let mut steps: Vec<Step> = keeps
        .into_iter()
        .map(|(path, to)| Step::Keep { path, to })
        .collect();
    // Children before parents.
    removes.sort_by(|a, b| b.cmp(a));
    steps.extend(removes.into_iter().map(|path| Step::Remove { path }));
    steps.extend(writes.into_iter().map(|entry| Step::Write { entry }));
    Plan { steps, conflicts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContentId;

    fn file(path: &str, byte: u8) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            mode: 0o644,
            mtime_secs: byte as i64,
            mtime_nanos: 0,
            kind: EntryKind::File {
                size: 1,
                content: ContentId([byte; 32]),
                info_hash: None,
            },
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            mode: 0o755,
            mtime_secs: 0,
            mtime_nanos: 0,
            kind: EntryKind::Dir,
        }
    }

    fn m(entries: &[Entry]) -> Manifest {
        let mut entries = entries.to_vec();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest { entries }
    }

    fn origin(_: &Entry) -> (String, u64) {
        ("b".into(), 7)
    }

    fn paths(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::Keep { path, to } => format!(
                    "keep {} as {}",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(to)
                ),
                Step::Remove { path } => format!("rm {}", String::from_utf8_lossy(path)),
                Step::Write { entry } => format!("write {}", entry.path_lossy()),
            })
            .collect()
    }

    #[test]
    fn one_sided_changes_take_that_side() {
        let base = m(&[file("a", 1), file("b", 1), file("c", 1)]);
        // Here: c changed, d new. There: a changed, b deleted, e new.
        let local = m(&[file("a", 1), file("b", 1), file("c", 2), file("d", 1)]);
        let remote = m(&[file("a", 2), file("c", 1), file("e", 1)]);
        let p = plan(&base, &local, &remote, &origin);
        assert_eq!(paths(&p), ["rm b", "write a", "write e"]);
        assert_eq!(p.conflicts, 0);
    }

    #[test]
    fn both_sided_changes_keep_a_conflict_copy() {
        let base = m(&[file("a", 1), file("b", 1), file("c", 1)]);
        // a: changed both sides; b: changed here, deleted there; c: deleted here,
        // changed there.
        let local = m(&[file("a", 2), file("b", 2)]);
        let remote = m(&[file("a", 3), file("c", 3)]);
        let p = plan(&base, &local, &remote, &origin);
        assert_eq!(
            paths(&p),
            ["keep a as a.conflict-b-7", "write a", "write c"]
        );
        assert_eq!(p.conflicts, 1);
    }

    #[test]
    fn same_change_on_both_sides_is_no_conflict() {
        let base = m(&[file("a", 1)]);
        let both = m(&[file("a", 2)]);
        assert_eq!(plan(&base, &both, &both, &origin), Plan::default());
    }

    #[test]
    fn removed_directories_go_children_first() {
        let base = m(&[dir("d"), file("d/x", 1), dir("d/e"), file("d/e/y", 1)]);
        let p = plan(&base, &base, &Manifest::default(), &origin);
        assert_eq!(paths(&p), ["rm d/x", "rm d/e/y", "rm d/e", "rm d"]);
    }

    #[test]
    fn a_local_directory_where_the_remote_has_a_file_is_moved_aside_whole() {
        let base = Manifest::default();
        let local = m(&[dir("x"), file("x/in", 1)]);
        let remote = m(&[file("x", 2)]);
        let p = plan(&base, &local, &remote, &origin);
        assert_eq!(paths(&p), ["keep x as x.conflict-b-7", "write x"]);
    }
}
