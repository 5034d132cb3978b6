//! Damaged stores: what check names, what repair keeps, the index rebuilt
//! from packs, and `--read-data` subsets that rotate through every pack.

use std::fs;
use std::path::Path;

use nightshift_store::{CheckOptions, Problem, Progress, RestoreOptions, Store};

use crate::common::*;
use crate::{awkward_backup, full_check, prune_now};

#[test]
fn a_flipped_byte_is_named_and_other_files_still_restore() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("victim"), noise(3000, 1)).unwrap();
    fs::write(source.join("bystander"), noise(3000, 2)).unwrap();
    let mut store = small_store(&work.path().join("store"));
    let outcome = backup(&mut store, &source);

    let victim_chunk = store
        .node_at(&outcome.snapshot, &format!("{}/victim", source.display()))
        .unwrap()
        .content[0];
    let location = store.index().get(&victim_chunk).unwrap();
    let pack_path = store.pack_path(location.pack);
    let mut bytes = fs::read(&pack_path).unwrap();
    bytes[location.blob.offset as usize + 100] ^= 0x01;
    fs::write(&pack_path, bytes).unwrap();

    let store = reopen(&work.path().join("store"));
    let structure = store.check(&CheckOptions::default()).unwrap();
    assert!(
        structure.is_ok(),
        "structure alone cannot see a flipped byte"
    );
    let report = store
        .check(&CheckOptions {
            read_data: 1.0,
            threads: 2,
        })
        .unwrap();
    assert!(!report.is_ok());
    let bad: Vec<_> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::BadChunk {
                chunk,
                pack,
                needed_by,
                ..
            } => Some((*chunk, *pack, needed_by.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", report.problems);
    let (chunk, pack, needed_by) = &bad[0];
    assert_eq!((*chunk, *pack), (victim_chunk, location.pack));
    assert_eq!(
        needed_by,
        &vec![(
            outcome.snapshot.id.clone(),
            format!("{}/victim", source.display())
        )]
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::PackHash { .. }))
    );

    let target = work.path().join("target");
    let restored = store
        .restore_to_dir(
            &outcome.snapshot,
            "/",
            &target,
            0,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(restored.failed.len(), 1, "{:?}", restored.failed);
    assert!(restored.failed[0].0.ends_with("victim"));
    assert!(restored.failed[0].1.contains(&victim_chunk.to_string()));
    assert_eq!(
        fs::read(landed(&target, &source).join("bystander")).unwrap(),
        noise(3000, 2)
    );

    // Repair copies every other chunk out and records the one file lost.
    let root = work.path().join("store");
    let (mut store, repaired) = repair(&root);
    assert_eq!(repaired.damaged_packs.len(), 1, "{repaired:?}");
    assert_eq!(repaired.damaged_packs[0].0, location.pack);
    assert_eq!(repaired.chunks_lost, 1, "{repaired:?}");
    assert!(repaired.chunks_salvaged >= 1, "{repaired:?}");
    assert_eq!(
        repaired.damaged_snapshots[&outcome.snapshot.id],
        vec![format!("{}/victim", source.display())]
    );
    assert!(
        root.join("damaged")
            .join(location.pack.to_string())
            .exists()
    );
    assert!(!pack_path.exists());
    let after = full_check(&store);
    assert!(
        after
            .problems
            .iter()
            .any(|p| matches!(p, Problem::KnownDamage { lost: 1, .. })),
        "{:?}",
        after.problems
    );
    let again = work.path().join("again");
    let restored = store
        .restore_to_dir(
            &outcome.snapshot,
            "/",
            &again,
            0,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(restored.failed.len(), 1, "{:?}", restored.failed);
    assert_eq!(
        fs::read(landed(&again, &source).join("bystander")).unwrap(),
        noise(3000, 2)
    );
    let pruned = prune_now(&mut store);
    assert_eq!(pruned.deleted.packs, 0, "{pruned:?}");
}

#[test]
fn a_truncated_pack_is_named_and_repair_keeps_every_chunk_before_the_cut() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    noise_files(&source, 6, 120_000);
    let root = work.path().join("store");
    let mut store = small_store(&root);
    let outcome = backup(&mut store, &source);
    let first = store
        .node_at(&outcome.snapshot, &format!("{}/f0", source.display()))
        .unwrap()
        .content[0];
    let pack = store.index().get(&first).unwrap().pack;
    let path = store.pack_path(pack);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let structure = store.check(&CheckOptions::default()).unwrap();
    assert!(
        structure.problems.iter().any(|p| matches!(
            p, Problem::PackHeader { pack: p, what } if *p == pack && what.contains("truncated")
        )),
        "{:?}",
        structure.problems
    );
    let report = store
        .check(&CheckOptions {
            read_data: 1.0,
            threads: 0,
        })
        .unwrap();
    let lost_files: std::collections::BTreeSet<String> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::BadChunk { needed_by, .. } => Some(needed_by.clone()),
            _ => None,
        })
        .flatten()
        .map(|(snapshot, path)| {
            assert_eq!(snapshot, outcome.snapshot.id);
            path
        })
        .collect();
    assert!(!lost_files.is_empty(), "{:?}", report.problems);

    let (store, repaired) = repair(&root);
    assert_eq!(repaired.damaged_packs.len(), 1, "{repaired:?}");
    assert!(
        repaired.chunks_salvaged > 0 && repaired.chunks_lost > 0,
        "{repaired:?}"
    );
    let recorded: std::collections::BTreeSet<String> = repaired.damaged_snapshots
        [&outcome.snapshot.id]
        .iter()
        .cloned()
        .collect();
    assert_eq!(recorded, lost_files, "repair and check name the same files");
    full_check(&store);
    let target = work.path().join("target");
    let restored = store
        .restore_to_dir(
            &outcome.snapshot,
            "/",
            &target,
            0,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(restored.failed.len(), lost_files.len());
    for n in 0..6 {
        let name = format!("{}/f{n}", source.display());
        if !lost_files.contains(&name) {
            let back = fs::read(landed(&target, &source).join(format!("f{n}"))).unwrap();
            assert!(back == noise(120_000, n), "f{n} is whole after repair");
        }
    }
}

#[test]
fn repair_opens_a_store_whose_index_file_is_garbage() {
    let (work, source, root, store, outcome) = awkward_backup();
    let chunks = store.index().len();
    let index = fs::read_dir(root.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(&index, b"NSINDEX\x01 and then noise").unwrap();
    drop(store);
    let err = Store::open(&root, Some(&passphrase())).unwrap_err();
    assert!(err.to_string().contains("store check"), "{err}");
    let (store, repaired) = repair(&root);
    assert_eq!(repaired.unreadable_index_files.len(), 1);
    assert!(repaired.damaged_snapshots.is_empty(), "{repaired:?}");
    assert_eq!(store.index().len(), chunks);
    full_check(&store);
    let target = work.path().join("target");
    restore_all(&reopen(&root), &outcome.snapshot.id, &target);
    assert_eq!(describe(&landed(&target, &source)), describe(&source));
}

#[test]
fn the_index_is_rebuilt_from_packs_alone() {
    let (work, source, root, store, outcome) = awkward_backup();
    let chunks = store.index().len();
    for entry in fs::read_dir(root.join("index")).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut store = reopen(&root);
    assert!(store.index().is_empty());
    assert!(!store.check(&CheckOptions::default()).unwrap().is_ok());
    assert_eq!(store.rebuild_index().unwrap(), chunks);
    let store = reopen(&root);
    assert!(
        store
            .check(&CheckOptions {
                read_data: 1.0,
                threads: 0
            })
            .unwrap()
            .is_ok()
    );
    let target = work.path().join("target");
    restore_all(&store, &outcome.snapshot.id, &target);
    assert_eq!(describe(&landed(&target, &source)), describe(&source));
}

#[test]
fn an_unindexed_pack_from_an_interrupted_backup_is_harmless() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    awkward_tree(&source);
    let root = work.path().join("store");
    let mut store = small_store(&root);
    backup(&mut store, &source);
    // What a backup killed after writing a pack but before its index leaves.
    let stray = root.join("data/ff");
    fs::create_dir_all(&stray).unwrap();
    fs::write(stray.join("ff".repeat(32)), b"half a pack").unwrap();
    fs::write(root.join("tmp/partial"), b"half a file").unwrap();
    let store = reopen(&root);
    let report = full_check(&store);
    assert!(matches!(
        report.problems.as_slice(),
        [Problem::PackNotIndexed { .. }]
    ));
}

#[test]
fn read_data_subsets_rotate_through_every_pack() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    noise_files(&source, 12, 700_000);
    let root = work.path().join("store");
    let mut store = small_store(&root);
    backup(&mut store, &source);
    let store = reopen(&root);
    let before = store.verification_status();
    assert!(before.packs >= 8, "{before:?}");
    assert_eq!(before.unverified_packs, before.packs);
    assert_eq!(before.oldest, None);

    let mut read = std::collections::HashSet::new();
    for run in 1..=4 {
        let report = store
            .check(&CheckOptions {
                read_data: 0.25,
                threads: 0,
            })
            .unwrap();
        assert!(report.is_ok());
        assert!(report.packs_read < before.packs, "a subset, not everything");
        let status = store.verification_status();
        read.insert(status.unverified_packs);
        if run < 4 {
            assert!(status.unverified_packs > 0, "run {run}: {status:?}");
        }
    }
    let after = store.verification_status();
    assert_eq!(
        after.unverified_packs, 0,
        "four quarters cover the store: {after:?}"
    );
    assert_eq!(after.unverified_bytes, 0);
    assert!(after.oldest.is_some());
    assert_eq!(read.len(), 4, "each run verified packs the others had not");
}

/// `nightshift store repair`: opens without the index, which may be
/// what is damaged, and repairs under an exclusive lock.
fn repair(root: &Path) -> (Store, nightshift_store::RepairReport) {
    let mut store = Store::open_unindexed(root, Some(&passphrase())).unwrap();
    let lock = store
        .lock(nightshift_store::LockKind::Exclusive, "repair")
        .unwrap();
    let report = store.repair(&lock).unwrap();
    drop(lock);
    (store, report)
}
