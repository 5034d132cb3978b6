//! The store end to end on real files: backup, restore, check.

#![allow(
    clippy::print_stderr,
    reason = "a test says which of its parts this machine skips"
)]
#![allow(clippy::unwrap_used)] // a test fails loudly on any error

mod common;
mod damage;
mod encryption;
mod history;
mod locks;
mod prune;
mod round_trip;
mod streams;
mod swaps;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use nightshift_store::{CheckOptions, Store};
use proptest::prelude::*;

/// The awkward tree backed up once into a new small store.
fn awkward_backup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Store,
    nightshift_store::BackupOutcome,
) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    awkward_tree(&source);
    let root = work.path().join("store");
    let mut store = small_store(&root);
    let outcome = backup(&mut store, &source);
    (work, source, root, store, outcome)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(
        files in prop::collection::vec(
            (
                prop::collection::vec("[a-zA-Zé☃ \n._-]{1,12}", 1..4),
                0usize..40_000,
                any::<u64>(),
                any::<bool>(),
            ),
            0..25,
        ),
        links in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..4),
    ) {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        fs::create_dir_all(&source).unwrap();
        let mut made = Vec::new();
        for (parts, len, seed, only_dir) in &files {
            let parts: Vec<_> = parts.iter().filter(|p| *p != "." && *p != "..").collect();
            let Some((name, dirs)) = parts.split_last() else { continue };
            let dir = dirs.iter().fold(source.clone(), |d, p| d.join(p));
            if fs::create_dir_all(&dir).is_err() { continue; }
            let path = dir.join(name);
            if path.exists() { continue; }
            if *only_dir {
                fs::create_dir(&path).unwrap();
                continue;
            }
            fs::write(&path, noise(*len, *seed)).unwrap();
            made.push(path);
        }
        for (i, (which, hard)) in links.iter().enumerate() {
            if made.is_empty() { break; }
            let original = which.get(&made).clone();
            let link = source.join(format!("link{i}"));
            if *hard {
                fs::hard_link(&original, &link).unwrap();
            } else {
                symlink(&original, &link).unwrap();
            }
        }
        let mut store = small_store(&work.path().join("store"));
        let outcome = backup(&mut store, &source);
        let target = work.path().join("target");
        let restored = restore_all(&store, &outcome.snapshot.id, &target);
        prop_assert!(restored.failed.is_empty(), "{:?}", restored.failed);
        prop_assert_eq!(describe(&landed(&target, &source)), describe(&source));
    }

    #[test]
    fn an_insertion_moves_chunk_boundaries_only_near_it(
        seed in any::<u64>(),
        at in 0usize..300_000,
        inserted in prop::collection::vec(any::<u8>(), 1..100),
    ) {
        let data = noise(300_000, seed);
        let mut edited = data.clone();
        edited.splice(at..at, inserted.iter().copied());
        let chunks = |bytes: &[u8]| -> Vec<Vec<u8>> {
            nightshift_store::Chunker::with_seed(SMALL_CHUNKS, seed)
                .chunks(bytes)
                .collect::<std::io::Result<_>>()
                .unwrap()
        };
        let original = chunks(&data);
        let before: std::collections::HashSet<_> = original.iter().cloned().collect();
        let after = chunks(&edited);
        let kept: std::collections::HashSet<_> = after.iter().collect();
        // Every chunk that ends before the insertion is cut the same way.
        let mut end = 0;
        for chunk in &original {
            end += chunk.len();
            if end <= at {
                prop_assert!(kept.contains(chunk), "a chunk before the insertion changed");
            }
        }
        // After it the cut points fall back into step within a few chunks
        // (FastCDC skips the first min_size bytes of each chunk, so one
        // shifted cut can move the next one or two).
        let new = after.iter().filter(|c| !before.contains(*c)).count();
        prop_assert!(new <= 6, "{new} new chunks of {} after one insertion", after.len());
    }
}

/// Prunes under a prune lock, as `nightshift store prune` does.
fn prune_with(
    store: &mut Store,
    options: &nightshift_store::PruneOptions,
) -> nightshift_store::Result<nightshift_store::PruneReport> {
    let lock = store
        .lock(nightshift_store::LockKind::Prune, "prune")
        .unwrap();
    store.prune(&lock, options)
}

/// Without the delete delay, so a second run deletes what the first marked.
fn prune_now(store: &mut Store) -> nightshift_store::PruneReport {
    let options = nightshift_store::PruneOptions {
        delete_delay: std::time::Duration::ZERO,
        ..nightshift_store::PruneOptions::default()
    };
    prune_with(store, &options).unwrap()
}

/// `check --read-data`, which must find no errors.
fn full_check(store: &Store) -> nightshift_store::CheckReport {
    let report = store
        .check(&CheckOptions {
            read_data: 1.0,
            threads: 0,
        })
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    report
}
