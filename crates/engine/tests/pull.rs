//! Agentless pull backups end to end on real files: the pull's own find
//! and tar commands, run through `sh` as on a host, feeding the store's
//! planner and tar ingestion, on temporary directories.

#![allow(clippy::unwrap_used)] // a test fails loudly on any error

#[allow(dead_code)] // the store tests' helpers, not all needed here
#[path = "../../store/tests/common/mod.rs"]
mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::*;
use nightshift_engine::pull::{fetch_list, listing_command, read_listing, tar_command};
use nightshift_store::{BackupOutcome, Progress, RemoteOptions, RemotePlan, Store, StoreError};

/// What a test's remote backup of `paths` records.
fn remote_options(paths: Vec<String>) -> RemoteOptions {
    RemoteOptions {
        paths,
        backup: options(),
        ..Default::default()
    }
}

/// A work directory outside /tmp, which other processes change; tests in
/// this binary still make and remove directories beside it, so an
/// assertion on a whole snapshot allows the listings above its source to be
/// new.
fn remote_work() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn sh(command: &str) -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn label(path: &Path) -> String {
    path.display().to_string()
}

/// Lists `source` with find as on a host, and plans against the store.
fn remote_plan(store: &mut Store, source: &Path, exclude: &[&str]) -> RemotePlan {
    let paths = vec![label(source)];
    let exclude: Vec<String> = exclude.iter().map(|e| e.to_string()).collect();
    let listing = sh(&listing_command(&paths, &exclude).unwrap());
    let listing = read_listing(&listing[..]).unwrap();
    store
        .plan_remote_backup(listing, &remote_options(paths))
        .unwrap()
}

/// The tar of a plan's fetch list, made as on a host: the list goes to a
/// file first, then tar reads it.
fn remote_tar(work: &Path, plan: &RemotePlan) -> Vec<u8> {
    let list = work.join("fetch-list");
    fs::write(&list, fetch_list(plan)).unwrap();
    sh(&tar_command(list.to_str().unwrap()))
}

fn remote_backup(store: &mut Store, work: &Path, plan: RemotePlan) -> BackupOutcome {
    let tar = remote_tar(work, &plan);
    store
        .backup_remote(plan, &tar[..], Vec::new(), &Progress::default())
        .unwrap()
}

/// Restores a whole snapshot into `work/target`, checks that nothing
/// failed, and returns where `source` landed.
fn restored(store: &Store, id: &str, work: &Path, source: &Path) -> std::path::PathBuf {
    let target = work.join("target");
    let outcome = restore_all(store, id, &target);
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    landed(&target, source)
}

fn fetched(plan: &RemotePlan, source: &Path) -> Vec<String> {
    let mut names: Vec<String> = plan
        .fetch
        .iter()
        .map(|p| {
            let path = Path::new(OsStr::from_bytes(p));
            label(path.strip_prefix(source).unwrap())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_remote_backup_restores_a_tree_with_excludes_odd_names_and_links() {
    let work = remote_work();
    let source = work.path().join("source");
    awkward_tree(&source);
    fs::write(
        source.join(OsStr::from_bytes(b"latin1 caf\xe9")),
        "not UTF-8",
    )
    .unwrap();
    fs::write(source.join("junk.tmp"), "excluded").unwrap();
    fs::write(source.join("a/b/deeper.tmp"), "excluded too").unwrap();
    filetime::set_file_mtime(
        source.join("zeros"),
        filetime::FileTime::from_unix_time(1_500_000_000, 123_456_789),
    )
    .unwrap();
    // A device node where the tests may make one (root): its number comes
    // through tar, as find cannot print it.
    let device = std::process::Command::new("mknod")
        .arg(source.join("null"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    let mut store = small_store(&work.path().join("store"));

    let plan = remote_plan(&mut store, &source, &["*.tmp"]);
    assert!(plan.parent.is_none());
    assert_eq!(plan.files, 9, "awkward tree's 8 and the latin-1 name");
    let mut expected_fetch = vec![
        "a/b/c/d/e/f/g/h/deep.txt",
        "a/hard",
        "big.bin",
        "café ☕",
        "empty",
        "latin1 caf\u{FFFD}",
        "new\nline",
        "script.sh",
        "zeros",
    ];
    if device {
        expected_fetch.push("null");
    }
    expected_fetch.sort_unstable();
    // big.bin is the second name of a/hard: its content comes from there.
    expected_fetch.retain(|p| *p != "big.bin");
    assert_eq!(fetched(&plan, &source), expected_fetch);
    let mut latin1 = label(&source).into_bytes();
    latin1.extend_from_slice(b"/latin1 caf\xe9");
    assert!(plan.fetch.contains(&latin1), "names are fetched as bytes");

    let outcome = remote_backup(&mut store, work.path(), plan);
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    let snapshot = &outcome.snapshot.snapshot;
    assert_eq!(snapshot.paths, [label(&source)]);
    assert_eq!(snapshot.host, "localhost");
    assert_eq!(snapshot.summary.files, 9);
    assert_eq!(
        snapshot.summary.bytes_total,
        200_000 + 100_000 + 9 + 7 + 21 + 10 + 9 + 200_000
    );

    let back = restored(&store, &outcome.snapshot.id, work.path(), &source);
    let mut expected = describe(&source);
    expected.retain(|path, _| !path.to_string_lossy().ends_with(".tmp"));
    assert_eq!(expected.len() + 2, describe(&source).len());
    assert_eq!(describe(&back), expected);
    assert!(!back.join("junk.tmp").exists());
    assert_eq!(
        fs::read_link(back.join("link")).unwrap(),
        Path::new("big.bin")
    );
    let mtime = fs::metadata(back.join("zeros")).unwrap();
    assert_eq!(
        (mtime.mtime(), mtime.mtime_nsec()),
        (1_500_000_000, 123_456_789)
    );
    assert_eq!(
        fs::read(back.join(OsStr::from_bytes(b"latin1 caf\xe9"))).unwrap(),
        b"not UTF-8"
    );
    if device {
        let meta = fs::symlink_metadata(back.join("null")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(
            meta.rdev(),
            fs::metadata(source.join("null")).unwrap().rdev()
        );
    }
}

#[test]
fn a_remote_backup_of_localhost_is_the_tree_a_local_backup_makes() {
    let work = remote_work();
    let source = work.path().join("source");
    awkward_tree(&source);
    fs::write(source.join(OsStr::from_bytes(b"\xff\xfe")), "bytes").unwrap();
    let mut store = small_store(&work.path().join("store"));
    let plan = remote_plan(&mut store, &source, &[]);
    let remote = remote_backup(&mut store, work.path(), plan);

    // A local backup of the same paths takes the remote one as its parent
    // and finds every file unchanged: the listing recorded what stat says.
    let local = backup(&mut store, &source);
    let summary = &local.snapshot.snapshot.summary;
    assert_eq!(
        local.snapshot.snapshot.parent.as_deref(),
        Some(remote.snapshot.id.as_str())
    );
    assert_eq!(summary.bytes_read, 0, "{summary:?}");
    let at = label(&source);
    assert_eq!(
        store.node_at(&local.snapshot, &at).unwrap(),
        store.node_at(&remote.snapshot, &at).unwrap(),
        "the same node, so the same tree below it"
    );

    // And back: a remote backup after the local one fetches nothing, and
    // needs no tar at all.
    let plan = remote_plan(&mut store, &source, &[]);
    assert_eq!(plan.parent.as_ref().unwrap().id, local.snapshot.id);
    assert!(plan.fetch.is_empty(), "{:?}", plan.fetch);
    assert_eq!(
        plan.unchanged + 1,
        plan.files,
        "all but a hard link's second name"
    );
    let again = store
        .backup_remote(plan, std::io::empty(), Vec::new(), &Progress::default())
        .unwrap();
    assert_eq!(
        store.node_at(&again.snapshot, &at).unwrap(),
        store.node_at(&local.snapshot, &at).unwrap()
    );
}

#[test]
fn a_second_remote_backup_fetches_only_what_changed() {
    let work = remote_work();
    let source = work.path().join("source");
    awkward_tree(&source);
    let mut store = small_store(&work.path().join("store"));
    let plan = remote_plan(&mut store, &source, &[]);
    let first = remote_backup(&mut store, work.path(), plan);

    fs::write(source.join("script.sh"), "#!/bin/sh\necho changed\n").unwrap();
    fs::write(source.join("a/added"), noise(3000, 5)).unwrap();
    let plan = remote_plan(&mut store, &source, &[]);
    assert_eq!(plan.parent.as_ref().unwrap().id, first.snapshot.id);
    assert_eq!(fetched(&plan, &source), ["a/added", "script.sh"]);
    assert_eq!(plan.fetch_bytes, 23 + 3000);
    assert_eq!(plan.files, 9);
    assert_eq!(
        plan.unchanged, 6,
        "all but the two and a hard link's second name"
    );

    let second = remote_backup(&mut store, work.path(), plan);
    assert!(second.skipped.is_empty(), "{:?}", second.skipped);
    let summary = &second.snapshot.snapshot.summary;
    assert_eq!(summary.bytes_read, 23 + 3000, "{summary:?}");
    assert_eq!(summary.files_unchanged, 6, "{summary:?}");
    // New data is the changed bytes and the directory listings above them,
    // not the 400 kB of unchanged files.
    assert!(summary.new_bytes_raw < 3023 + 24_000, "{summary:?}");
    let big = label(&source.join("big.bin"));
    assert_eq!(
        store.node_at(&second.snapshot, &big).unwrap().content,
        store.node_at(&first.snapshot, &big).unwrap().content
    );

    let back = restored(&store, &second.snapshot.id, work.path(), &source);
    assert_eq!(describe(&back), describe(&source));
}

#[test]
fn files_that_vanish_or_change_before_tar_are_skipped_or_stored_as_delivered() {
    let work = remote_work();
    let source = work.path().join("source");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("stays"), noise(1000, 1)).unwrap();
    fs::write(source.join("gone"), noise(100, 2)).unwrap();
    fs::write(source.join("grows"), noise(1000, 3)).unwrap();
    fs::write(source.join("becomes-dir"), "file").unwrap();
    let mut store = small_store(&work.path().join("store"));
    let plan = remote_plan(&mut store, &source, &[]);
    assert_eq!(
        fetched(&plan, &source),
        ["becomes-dir", "gone", "grows", "stays"]
    );

    // Between the listing and the tar.
    fs::remove_file(source.join("gone")).unwrap();
    let mut grows = fs::OpenOptions::new()
        .append(true)
        .open(source.join("grows"))
        .unwrap();
    std::io::Write::write_all(&mut grows, &noise(5000, 4)).unwrap();
    drop(grows);
    fs::remove_file(source.join("becomes-dir")).unwrap();
    fs::create_dir(source.join("becomes-dir")).unwrap();

    let outcome = remote_backup(&mut store, work.path(), plan);
    let mut skipped: Vec<_> = outcome.skipped.iter().map(|s| s.path.clone()).collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            label(&source.join("becomes-dir")),
            label(&source.join("gone"))
        ],
        "{:?}",
        outcome.skipped
    );
    assert!(
        outcome
            .skipped
            .iter()
            .any(|s| s.error.contains("directory")),
        "{:?}",
        outcome.skipped
    );
    let snapshot = &outcome.snapshot;
    assert!(matches!(
        store.node_at(snapshot, &label(&source.join("gone"))),
        Err(StoreError::NoSuchPath { .. })
    ));
    assert!(
        store
            .node_at(snapshot, &label(&source.join("becomes-dir")))
            .is_err()
    );
    let grown = store
        .node_at(snapshot, &label(&source.join("grows")))
        .unwrap();
    assert_eq!(grown.size, 6000, "the size tar delivered");
    assert_eq!(
        snapshot.snapshot.summary.files, 2,
        "skipped files are not counted"
    );
    assert_eq!(snapshot.snapshot.summary.bytes_total, 7000);

    let back = restored(&store, &snapshot.id, work.path(), &source);
    assert_eq!(
        fs::read(back.join("grows")).unwrap(),
        fs::read(source.join("grows")).unwrap()
    );
    assert_eq!(fs::read(back.join("stays")).unwrap(), noise(1000, 1));
    assert!(!back.join("gone").exists());

    // What tar delivered does not pass for what the listing saw: the grown
    // file is fetched again, the unchanged one is not.
    let plan = remote_plan(&mut store, &source, &[]);
    assert_eq!(fetched(&plan, &source), ["grows"]);
}

#[test]
fn a_malformed_listing_or_a_foreign_tar_is_refused_and_nothing_is_written() {
    let listing_error = |bytes: &[u8]| match read_listing(bytes) {
        Err(err @ StoreError::Listing(_)) => err.to_string(),
        other => panic!("{other:?}"),
    };
    let record = |header: &str, path: &[u8], target: &[u8]| {
        [
            header.as_bytes(),
            b"\0root\0root\0",
            path,
            b"\0",
            target,
            b"\0",
        ]
        .concat()
    };
    let dir = record("d 755 0 0 4096 1.5 1.5 7 9 2", b"/a", b"");
    let err = listing_error(&record("f 644 0 0 12x 1.0 1.0 8 9 1", b"/a", b""));
    assert!(
        err.contains("record 1 (`/a`)") && err.contains("size"),
        "{err}"
    );
    let err = listing_error(
        &[
            dir.clone(),
            record("f 644 0 0 1 1.0 1.0 8 9 1", b"/a/../etc", b""),
        ]
        .concat(),
    );
    assert!(err.contains("record 2") && err.contains("`..`"), "{err}");
    let err = listing_error(&record("f 644 0 0 1 1.0 1.0 8 9 1", b"/a//b", b""));
    assert!(err.contains("empty"), "{err}");
    let err = listing_error(&record("f 644 0 0 1 1.0 1.0 8 9 1", b"relative", b""));
    assert!(err.contains("absolute"), "{err}");
    let err = listing_error(&record("f 644 0 0 1 1.0 1.0 8 9 1", b"/x/y", b""));
    assert!(err.contains("not listed before"), "{err}");
    // A NUL inside a name puts the fields out of step.
    let err = listing_error(&record("f 644 0 0 1 1.0 1.0 8 9 1", b"/a\0b", b""));
    assert!(
        err.contains("out of step") || err.contains("cut off"),
        "{err}"
    );
    let err = listing_error(&dir[..dir.len() - 3]);
    assert!(err.contains("record 1 is cut off"), "{err}");
    let err = listing_error(b"hello\0world\0");
    assert!(err.contains("cut off"), "{err}");

    let work = remote_work();
    let source = work.path().join("source");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("f"), "small").unwrap();
    let mut store = small_store(&work.path().join("store"));
    let paths = vec![label(&source)];
    let listing = sh(&listing_command(&paths, &[]).unwrap());
    let missing = store
        .plan_remote_backup(
            read_listing(&listing[..]).unwrap(),
            &remote_options(vec![label(&source.join("nope"))]),
        )
        .unwrap_err();
    assert!(matches!(missing, StoreError::Listing(_)), "{missing}");
    let plan_now = |store: &mut Store| {
        store
            .plan_remote_backup(
                read_listing(&listing[..]).unwrap(),
                &remote_options(paths.clone()),
            )
            .unwrap()
    };
    let attempt = |store: &mut Store, plan: RemotePlan, tar: &[u8]| {
        store
            .backup_remote(plan, tar, Vec::new(), &Progress::default())
            .unwrap_err()
    };

    // A member the plan did not ask for.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "etc/passwd", &b"evil"[..])
        .unwrap();
    let foreign = builder.into_inner().unwrap();
    let plan = plan_now(&mut store);
    let err = attempt(&mut store, plan, &foreign);
    assert!(err.to_string().contains("not in the fetch list"), "{err}");

    // A tar cut off at a block boundary, and none at all.
    let plan = plan_now(&mut store);
    let tar = remote_tar(work.path(), &plan);
    let err = attempt(&mut store, plan, &tar[..1024]);
    assert!(err.to_string().contains("end-of-archive"), "{err}");
    let plan = plan_now(&mut store);
    let err = attempt(&mut store, plan, b"");
    assert!(err.to_string().contains("end-of-archive"), "{err}");
    assert!(store.snapshots().unwrap().is_empty());

    // The same plan with the whole tar goes through.
    let plan = plan_now(&mut store);
    assert_eq!(plan.fetch.len(), 1);
    remote_backup(&mut store, work.path(), plan);
    assert_eq!(store.snapshots().unwrap().len(), 1);
}
