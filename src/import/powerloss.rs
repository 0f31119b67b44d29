//! The power-loss model applied to whole imports: a crash at every sync point of
//! three imports leaves a store that opens, checks clean and keeps every import that
//! had returned (the model is in `chunks::powerloss`); and a crash among the renames
//! of a batched catalog commit.

use crate::chunks::powerloss::{points, start, stop};
use crate::import::{import, ImportOptions};
use crate::read::{resolve, write_file, Target, WriteSink};
use crate::store::fsck::fsck;
use crate::Store;

fn read_back(store: &Store, spec: &str) -> crate::Result<Vec<u8>> {
    let Target::File { entry, .. } = resolve(store, spec)? else {
        panic!("{spec} is not a file");
    };
    let mut out = WriteSink(Vec::new());
    write_file(store, &entry, &mut out)?;
    Ok(out.0)
}

fn many_bytes(n: usize, seed: u8) -> Vec<u8> {
    format!("file {n} of tree {seed}\n")
        .repeat(n + 1)
        .into_bytes()
}

/// `count` small files of distinct content under `dir`, named 0, 1, ...
fn many_files(dir: &std::path::Path, count: usize, seed: u8) {
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..count {
        std::fs::write(dir.join(n.to_string()), many_bytes(n, seed)).unwrap();
    }
}

#[test]
fn an_import_crashed_at_every_sync_point_leaves_a_sound_store() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    // Three imports; the second and third share pieces with the first.
    let shared: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut sources = Vec::new();
    for i in 0..3u8 {
        let dir = tmp.path().join(format!("src{i}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("shared.bin"), &shared).unwrap();
        let own: Vec<u8> = (0..40_000u32).map(|j| (j as u8) ^ (i * 31)).collect();
        std::fs::write(dir.join("sub/own.bin"), &own).unwrap();
        if i == 1 {
            // Enough records for the batch to sync the file system once.
            many_files(&dir.join("many"), 20, i);
        }
        sources.push((dir, own));
    }
    start(&root);
    let store = Store::open(&root, Some(16 << 10)).unwrap();
    // After import i returned, every later image must hold it whole.
    let mut done = Vec::new();
    for (i, (dir, _)) in sources.iter().enumerate() {
        let opts = ImportOptions {
            name: Some(format!("t{i}")),
            ..ImportOptions::default()
        };
        import(&store, dir, &opts, &|_| {}, &|_| {}).unwrap();
        done.push(points());
    }
    drop(store);
    let images = stop();
    assert!(images.len() >= 20, "only {} sync points", images.len());
    for (k, files) in images.iter().enumerate() {
        let at = tmp.path().join(format!("crash-{k}"));
        for (rel, bytes) in files {
            let p = at.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
        if !at.join("config.json").exists() {
            continue; // before the store existed
        }
        let mut store = Store::open(&at, None)
            .unwrap_or_else(|e| panic!("crash at point {k}: the store does not open: {e}"));
        let report = fsck(&mut store, false).unwrap();
        assert!(report.is_clean(), "crash at point {k}: {report:?}");
        for (i, &n) in done.iter().enumerate() {
            let name = format!("t{i}");
            let present = store.catalog().get_ref(&name).unwrap().is_some();
            assert!(
                present || k < n,
                "crash at point {k}: import {i} had returned but is gone"
            );
            if present {
                // A ref never names a tree that is not whole.
                assert_eq!(
                    read_back(&store, &format!("{name}:shared.bin")).unwrap(),
                    shared
                );
                assert_eq!(
                    read_back(&store, &format!("{name}:sub/own.bin")).unwrap(),
                    sources[i].1,
                    "crash at point {k}: {name}"
                );
                if i == 1 {
                    assert_eq!(
                        read_back(&store, &format!("{name}:many/19")).unwrap(),
                        many_bytes(19, 1)
                    );
                }
            }
        }
        drop(store);
        std::fs::remove_dir_all(&at).unwrap();
    }
    eprintln!("{} crash points, every one sound", images.len());
}

#[test]
fn a_crash_among_the_renames_of_a_batch_leaves_only_unreferenced_records() {
    use crate::catalog::batch::CRASH_AFTER_RENAMES;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let (before, after) = (tmp.path().join("before"), tmp.path().join("after"));
    many_files(&before, 5, 0);
    many_files(&after, 30, 1);
    // 30 file torrents, the manifest's and the directory's: stopped after none, some,
    // and all but the last renames.
    for crash_at in [0, 1, 17, 31] {
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::open(&root, Some(16 << 10)).unwrap();
        let opts = |name: &str| ImportOptions {
            name: Some(name.into()),
            ..ImportOptions::default()
        };
        import(&store, &before, &opts("before"), &|_| {}, &|_| {}).unwrap();
        CRASH_AFTER_RENAMES.set(Some(crash_at));
        let err = import(&store, &after, &opts("after"), &|_| {}, &|_| {}).unwrap_err();
        CRASH_AFTER_RENAMES.set(None);
        assert!(err.to_string().contains("crashed"), "{err}");
        drop(store);

        let mut store = Store::open(&root, None).unwrap();
        assert!(store.catalog().get_ref("after").unwrap().is_none());
        // What was renamed is whole; the rest is temporary files nothing lists.
        let listed = store.catalog().torrents().unwrap();
        assert!(listed.len() >= 5 + crash_at, "{} records", listed.len());
        for ih in &listed {
            store.catalog().torrent(ih).unwrap().unwrap();
        }
        let report = fsck(&mut store, false).unwrap();
        assert!(
            report.is_clean(),
            "crash after {crash_at} renames: {report:?}"
        );
        assert_eq!(read_back(&store, "before:4").unwrap(), many_bytes(4, 0));

        // A new import completes what the crash left.
        let r = import(&store, &after, &opts("after"), &|_| {}, &|_| {}).unwrap();
        assert_eq!(r.files.len(), 30);
        for n in [0, 17, 29] {
            assert_eq!(
                read_back(&store, &format!("after:{n}")).unwrap(),
                many_bytes(n, 1),
                "crash after {crash_at} renames"
            );
        }
        let report = fsck(&mut store, false).unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
}
