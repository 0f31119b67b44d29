//! Hostile and malformed .torrent files: libtorrent's test corpus
//! (`tests/data/libtorrent-test-torrents`). Every file is accepted or refused
//! with an error naming it, never a panic; every file libtorrent refuses, cas refuses;
//! no accepted file names a path outside the torrent's own directory.

use std::path::{Path, PathBuf};

use cas::meta::parse::Metainfo;

use crate::common::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/libtorrent-test-torrents")
}

/// The files libtorrent refuses, from the corpus's README.
fn refused_by_libtorrent() -> Vec<String> {
    let readme = std::fs::read_to_string(corpus().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.ends_with(".torrent"))
        .map(str::to_string)
        .collect()
}

fn clean(component: &str) -> bool {
    !component.is_empty()
        && component != "."
        && component != ".."
        && !component.contains(['/', '\\', '\0'])
}

#[test]
fn every_corpus_torrent_is_accepted_safely_or_refused_clearly() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "torrent"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 100,
        "the corpus is missing: {}",
        corpus().display()
    );
    let must_refuse = refused_by_libtorrent();
    assert_eq!(must_refuse.len(), 42);
    let (mut accepted, mut refused) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(f).unwrap();
        let parsed = std::panic::catch_unwind(|| Metainfo::parse(&bytes))
            .unwrap_or_else(|_| panic!("{name}: parsing panicked"));
        match parsed {
            Ok(meta) => {
                accepted += 1;
                assert!(
                    !must_refuse.contains(&name),
                    "{name}: libtorrent refuses it, cas took it"
                );
                assert!(
                    clean(&meta.name) || !meta.single_file || meta.files.len() == 1,
                    "{name}"
                );
                for file in &meta.files {
                    assert!(!file.path.is_empty(), "{name}: a file without a path");
                    for c in &file.path {
                        assert!(clean(c), "{name}: path component {c:?}");
                    }
                }
                if !meta.single_file {
                    assert!(clean(&meta.name), "{name}: torrent name {:?}", meta.name);
                }
                let sum: u64 = meta.files.iter().map(|f| f.length).sum();
                assert_eq!(sum, meta.length, "{name}");
            }
            Err(e) => {
                refused += 1;
                assert!(
                    !e.to_string().trim().is_empty(),
                    "{name}: refused without a reason"
                );
            }
        }
    }
    assert!(
        accepted > 0 && refused >= must_refuse.len(),
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_binary_never_panics_on_the_corpus_and_names_the_file_it_refuses() {
    let env = Env::new();
    env.ok(&["init"]);
    let empty = env.path("no-data");
    std::fs::create_dir_all(&empty).unwrap();
    for e in std::fs::read_dir(corpus()).unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_none_or(|x| x != "torrent") {
            continue;
        }
        let out = env.run(&[
            "add",
            f.to_str().unwrap(),
            "--data",
            empty.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(1),
            "{}: exit {code:?}: {stderr}",
            f.display()
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", f.display());
        if code == Some(1) && stderr.contains("not a usable torrent") {
            assert!(stderr.contains(&*f.to_string_lossy()), "{stderr}");
        }
    }
    // Nothing was stored from data that is not there; the store is sound.
    let fsck = env.run(&["fsck"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}
