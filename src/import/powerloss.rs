//! The power-loss model applied to whole imports: a crash at every sync point of
//! three imports leaves a store that opens, checks clean and keeps every import that
//! had returned (the model is in `chunks::powerloss`).

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
            }
        }
        drop(store);
        std::fs::remove_dir_all(&at).unwrap();
    }
    eprintln!("{} crash points, every one sound", images.len());
}
