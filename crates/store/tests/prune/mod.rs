//! Prune: packs marked then deleted, repacked while unused space exceeds the
//! limit, and whatever a snapshot still needs kept or recovered.

use std::fs;
use std::path::Path;

use nightshift_store::{Store, StoreError};

use crate::common::*;
use crate::{awkward_backup, full_check, prune_now, prune_with};

fn packs_on_disk(store: &Store) -> std::collections::BTreeSet<String> {
    store
        .packs_on_disk()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Two directories of incompressible files, backed up as two snapshots.
fn two_generations(work: &Path) -> (Store, String, String, std::path::PathBuf) {
    let (old, new) = (work.join("old"), work.join("new"));
    fs::create_dir_all(&old).unwrap();
    fs::create_dir_all(&new).unwrap();
    for n in 0..6 {
        fs::write(old.join(format!("f{n}")), noise(400_000, n)).unwrap();
        fs::write(new.join(format!("f{n}")), noise(400_000, 100 + n)).unwrap();
    }
    let mut store = small_store(&work.join("store"));
    let first = backup(&mut store, &old).snapshot.id;
    let second = backup(&mut store, &new).snapshot.id;
    (store, first, second, new)
}

#[test]
fn prune_marks_first_and_deletes_on_a_later_run() {
    let work = tempfile::tempdir().unwrap();
    let (mut store, first, second, new) = two_generations(work.path());
    let before = packs_on_disk(&store);
    store.forget(&[first]).unwrap();

    let dry_run = nightshift_store::PruneOptions {
        dry_run: true,
        ..nightshift_store::PruneOptions::default()
    };
    let dry = prune_with(&mut store, &dry_run).unwrap();
    assert!(dry.marked.packs >= 2, "{dry:?}");
    assert_eq!(packs_on_disk(&store), before, "a dry run changes nothing");

    let marked = prune_now(&mut store);
    assert_eq!(marked.marked, dry.marked, "the dry run said what happens");
    assert_eq!(marked.deleted.packs, 0, "nothing goes on the first run");
    assert_eq!(packs_on_disk(&store), before, "marked packs stay on disk");
    assert!(marked.pending_until.is_some());
    full_check(&store);

    let deleted = prune_now(&mut store);
    assert_eq!(deleted.deleted, marked.marked, "{deleted:?}");
    assert!(deleted.deleted.bytes > 2_000_000, "{deleted:?}");
    let after = packs_on_disk(&store);
    assert_eq!(after.len(), before.len() - marked.marked.packs);
    full_check(&store);
    let target = work.path().join("restored");
    restore_all(&reopen(&work.path().join("store")), &second, &target);
    assert_eq!(describe(&landed(&target, &new)), describe(&new));
    let quiet = prune_now(&mut store);
    assert_eq!(
        (
            quiet.marked.packs,
            quiet.deleted.packs,
            quiet.repacked.packs
        ),
        (0, 0, 0)
    );
}

#[test]
fn a_mostly_unneeded_pack_is_repacked_and_what_is_needed_survives() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    noise_files(&source, 5, 150_000);
    let mut store = small_store(&work.path().join("store"));
    let first = backup(&mut store, &source).snapshot.id;
    for n in 1..5 {
        fs::remove_file(source.join(format!("f{n}"))).unwrap();
    }
    let second = backup(&mut store, &source).snapshot.id;
    store.forget(&[first]).unwrap();
    let report = prune_now(&mut store);
    assert_eq!(report.repacked.packs, 1, "{report:?}");
    assert!(
        (140_000..200_000).contains(&report.rewritten_bytes),
        "one file of five is copied: {report:?}"
    );
    let deleted = prune_now(&mut store);
    assert_eq!(
        (deleted.deleted.packs, deleted.recovered.packs),
        (report.repacked.packs + report.marked.packs, 0),
        "the copy is found, not the repacked pack: {deleted:?}"
    );
    full_check(&store);
    let target = work.path().join("restored");
    restore_all(&reopen(&work.path().join("store")), &second, &target);
    assert_eq!(describe(&landed(&target, &source)), describe(&source));
    assert!(store.index().marked_packs().next().is_none());
}

#[test]
fn a_backup_after_the_mark_stores_again_and_a_lock_older_than_it_defers_deletion() {
    let work = tempfile::tempdir().unwrap();
    let (mut store, first, _, _) = two_generations(work.path());
    let root = work.path().join("store");
    let old = work.path().join("old");
    store.forget(&[first]).unwrap();
    // A backup that started before the mark: its lock holds deletion back.
    let running = reopen(&root);
    let early = running
        .lock(nightshift_store::LockKind::Shared, "backup")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let marked = prune_now(&mut store);
    assert!(marked.marked.packs >= 2);
    let deferred = prune_now(&mut store);
    assert_eq!(deferred.deleted.packs, 0);
    assert_eq!(
        deferred.deferred_by.as_ref().map(|l| l.pid),
        Some(std::process::id())
    );
    drop(early);

    // A backup after the mark does not lean on the marked packs.
    let mut later = reopen(&root);
    let again = backup(&mut later, &old);
    assert!(
        again.snapshot.snapshot.summary.new_bytes_raw >= 2_400_000,
        "{:?}",
        again.snapshot.snapshot.summary
    );
    let report = prune_now(&mut store);
    assert_eq!(report.deleted, marked.marked, "{report:?}");
    full_check(&store);
    let target = work.path().join("restored");
    restore_all(&reopen(&root), &again.snapshot.id, &target);
    assert_eq!(describe(&landed(&target, &old)), describe(&old));
}

#[test]
fn a_snapshot_needing_a_marked_pack_recovers_it() {
    let work = tempfile::tempdir().unwrap();
    let (mut store, first, _, _) = two_generations(work.path());
    let root = work.path().join("store");
    let file = root.join("snapshots").join(&first);
    let saved = fs::read(&file).unwrap();
    store.forget(std::slice::from_ref(&first)).unwrap();
    let marked = prune_now(&mut store);
    assert!(marked.marked.packs >= 2);
    // What a backup that began before the mark and ended after it writes.
    fs::write(&file, saved).unwrap();
    let report = prune_now(&mut store);
    assert_eq!(report.recovered, marked.marked, "{report:?}");
    assert_eq!(report.deleted.packs, 0);
    full_check(&store);
    let target = work.path().join("restored");
    restore_all(&reopen(&root), &first, &target);
    let old = work.path().join("old");
    assert_eq!(describe(&landed(&target, &old)), describe(&old));
}

#[test]
fn prune_refuses_to_run_when_a_snapshot_needs_a_missing_pack() {
    let work = tempfile::tempdir().unwrap();
    let (mut store, _, second, _) = two_generations(work.path());
    let snapshot = store.find_snapshot(&second).unwrap();
    let tree = store.index().get(&snapshot.snapshot.tree).unwrap();
    fs::remove_file(store.pack_path(tree.pack)).unwrap();
    let before = packs_on_disk(&store);
    let err = prune_with(&mut store, &nightshift_store::PruneOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::PruneRefused { .. }), "{err}");
    assert!(err.to_string().contains("store repair"), "{err}");
    assert_eq!(packs_on_disk(&store), before);
}

#[test]
fn whole_packs_of_an_interrupted_backup_are_reused_by_the_next() {
    // The root tree records its ancestors' metadata, and other tests make
    // and remove directories beside this one (in /tmp or the target's tmp)
    // between the two backups: only those listings may be new.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (store, _, second, new) = two_generations(work.path());
    let root = work.path().join("store");
    // Keep the packs but lose the index: what a backup killed between its
    // packs and its index file leaves.
    let snapshot = store.find_snapshot(&second).unwrap();
    drop(store);
    for name in fs::read_dir(root.join("index")).unwrap() {
        fs::remove_file(name.unwrap().path()).unwrap();
    }
    fs::remove_file(root.join("snapshots").join(&snapshot.id)).unwrap();
    fs::remove_file(
        root.join("snapshots")
            .join(reopen(&root).snapshots().unwrap()[0].id.clone()),
    )
    .unwrap();
    let mut store = reopen(&root);
    assert!(store.index().is_empty());
    let again = backup(&mut store, &new);
    let summary = &again.snapshot.snapshot.summary;
    assert!(
        summary.new_chunks <= new.ancestors().count() as u64,
        "at most the listings above the source are new: {summary:?}"
    );
    assert!(
        summary.new_bytes_raw < 64 * 1024,
        "every file's chunks came from the adopted packs: {summary:?}"
    );
    full_check(&store);
}

#[test]
fn packs_mostly_needed_are_repacked_only_while_unused_space_exceeds_the_limit() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    noise_files(&source, 10, 90_000);
    let mut store = small_store(&work.path().join("store"));
    let first = backup(&mut store, &source).snapshot.id;
    for n in 0..3 {
        fs::remove_file(source.join(format!("f{n}"))).unwrap();
    }
    let second = backup(&mut store, &source).snapshot.id;
    store.forget(&[first]).unwrap();
    let prune = |store: &mut Store, max_unused: f64, dry_run: bool| {
        let options = nightshift_store::PruneOptions {
            delete_delay: std::time::Duration::ZERO,
            max_unused,
            dry_run,
            ..nightshift_store::PruneOptions::default()
        };
        prune_with(store, &options).unwrap()
    };
    let lenient = prune(&mut store, 1.0, true);
    assert_eq!(
        lenient.repacked.packs, 0,
        "70 % needed is above 50 %: {lenient:?}"
    );
    let strict = prune(&mut store, 0.05, false);
    assert!(
        strict.repacked.packs >= 1,
        "30 % unused is above 5 %: {strict:?}"
    );
    prune(&mut store, 0.05, false);
    full_check(&store);
    let target = work.path().join("restored");
    restore_all(&reopen(&work.path().join("store")), &second, &target);
    assert_eq!(describe(&landed(&target, &source)), describe(&source));
}

#[test]
fn a_store_of_small_files_is_left_alone_by_a_second_prune() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    noise_files(&source, 1000, 300);
    let mut store = small_store(&work.path().join("store"));
    backup(&mut store, &source);
    let first = prune_now(&mut store);
    assert_eq!(
        (first.repacked.packs, first.marked.packs),
        (0, 0),
        "pack headers are not unused space: {first:?}"
    );
}

#[test]
fn a_stray_file_among_the_pack_directories_is_ignored() {
    let (work, source, root, mut store, _) = awkward_backup();
    fs::write(root.join("data/.DS_Store"), b"finder").unwrap();
    full_check(&store);
    backup(&mut store, &source);
    prune_now(&mut store);
    drop(work);
}
