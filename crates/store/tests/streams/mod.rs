//! Tar streams and named byte streams: backed up, restored, and a tar
//! member climbing out refused.

use std::fs;

use nightshift_store::{Progress, StoreError};

use crate::common::*;

#[test]
fn tar_streams_back_up_and_restore_as_tar() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    awkward_tree(&source);
    // GNU tar, as the engine runs it on a remote host.
    let tar = std::process::Command::new("tar")
        .args(["--create", "--file=-", "--directory"])
        .arg(work.path())
        .arg("source")
        .output()
        .unwrap();
    assert!(tar.status.success());

    let mut store = small_store(&work.path().join("store"));
    let outcome = store
        .backup_tar(
            &tar.stdout[..],
            &["/srv/source".into()],
            &options(),
            &Progress::default(),
        )
        .unwrap();
    let target = work.path().join("target");
    let restored = restore_all(&store, &outcome.snapshot.id, &target);
    assert!(restored.failed.is_empty(), "{:?}", restored.failed);
    let original = describe(&source);
    assert!(
        original.values().any(|e| e.link_group.is_some()),
        "the tree has hard links"
    );
    assert_eq!(describe(&target.join("source")), original);

    let mut out = Vec::new();
    store
        .restore_to_tar(&outcome.snapshot, "/source", &mut out, KEEP)
        .unwrap();
    let unpacked = work.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let mut untar = std::process::Command::new("tar")
        .args(["--extract", "--file=-", "--same-permissions", "--directory"])
        .arg(&unpacked)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &out).unwrap();
    drop(untar.stdin.take());
    assert!(untar.wait().unwrap().success());
    assert_eq!(describe(&unpacked.join("source")), original);
}

#[test]
fn a_tar_member_climbing_out_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    let mut raw = tar::Builder::new(Vec::new());
    // `append_data` refuses `..`, so write the name into the header directly.
    header.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../escaped");
    header.set_cksum();
    raw.append(&header, &b"evil"[..]).unwrap();
    let tar = raw.into_inner().unwrap();
    let mut store = small_store(&work.path().join("store"));
    let err = store
        .backup_tar(&tar[..], &["x".into()], &options(), &Progress::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::EscapingPath { .. }), "{err}");
    assert!(store.snapshots().unwrap().is_empty());
}

#[test]
fn a_named_stream_is_one_file() {
    let work = tempfile::tempdir().unwrap();
    let mut store = small_store(&work.path().join("store"));
    let dump = noise(100_000, 9);
    let outcome = store
        .backup_stream("pg_dumpall", &dump[..], &options(), &Progress::default())
        .unwrap();
    assert_eq!(outcome.snapshot.snapshot.paths, vec!["stream:pg_dumpall"]);
    let target = work.path().join("target");
    restore_all(&store, &outcome.snapshot.id, &target);
    assert_eq!(fs::read(target.join("pg_dumpall")).unwrap(), dump);
}
