//! Real trees backed up and restored: content and metadata bit-exact,
//! unchanged files not read again, sub-paths, links planted in the target,
//! special bits, devices and owners.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use nightshift_store::{Progress, RestoreOptions, StoreError};

use crate::common::*;

#[test]
fn restore_is_bit_exact_with_metadata_links_and_odd_names() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    awkward_tree(&source);
    let mut store = small_store(&work.path().join("store"));
    let outcome = backup(&mut store, &source);
    let summary = &outcome.snapshot.snapshot.summary;
    assert_eq!(summary.files, 8, "{summary:?}");
    assert!(summary.new_chunks > 20, "{summary:?}");

    let target = work.path().join("target");
    let restored = restore_all(&store, &outcome.snapshot.id, &target);
    assert!(restored.failed.is_empty(), "{:?}", restored.failed);
    assert_eq!(describe(&landed(&target, &source)), describe(&source));
}

#[test]
fn unchanged_files_are_not_read_again_and_add_nothing() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    awkward_tree(&source);
    let mut store = small_store(&work.path().join("store"));
    let first = backup(&mut store, &source);

    let second = backup(&mut store, &source);
    let summary = &second.snapshot.snapshot.summary;
    assert_eq!(
        second.snapshot.snapshot.parent.as_deref(),
        Some(first.snapshot.id.as_str())
    );
    assert_eq!(summary.bytes_read, 0, "{summary:?}");
    // Only listings of the directories above the source may change (other
    // tests write into the temporary directory).
    let ancestors = source.ancestors().count() as u64;
    assert!(summary.new_chunks <= ancestors, "{summary:?}");
    assert_eq!(
        summary.files_unchanged + 1,
        summary.files,
        "all but the second name of a hard link"
    );

    fs::write(source.join("script.sh"), "#!/bin/sh\necho changed\n").unwrap();
    let third = backup(&mut store, &source);
    assert_eq!(third.snapshot.snapshot.summary.bytes_read, 23);
    let target = work.path().join("target");
    restore_all(&store, &third.snapshot.id, &target);
    assert_eq!(describe(&landed(&target, &source)), describe(&source));
}

#[test]
fn a_sub_path_restores_under_its_own_name() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    awkward_tree(&source);
    let mut store = small_store(&work.path().join("store"));
    let outcome = backup(&mut store, &source);
    let sub = format!("{}/a/b", source.display());
    let target = work.path().join("target");
    store
        .restore_to_dir(
            &outcome.snapshot,
            &sub,
            &target,
            2,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(
        fs::read(target.join("b/c/d/e/f/g/h/deep.txt")).unwrap(),
        b"down here"
    );
    let missing = store
        .node_at(&outcome.snapshot, "/no/such/path")
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NoSuchPath { .. }),
        "{missing}"
    );
}

/// Names that shells, terminals and lossy conversions get wrong.
const ODD_NAMES: [&[u8]; 4] = [b"new\nline", b"tab\there", b"\xff", b"-dash"];

#[test]
fn a_link_planted_where_a_directory_goes_is_refused_never_followed() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    for name in ODD_NAMES {
        let dir = source.join(OsStr::from_bytes(name));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("passwd"), "restored").unwrap();
    }
    fs::create_dir_all(source.join("etc")).unwrap();
    fs::write(source.join("etc/passwd"), "restored").unwrap();
    fs::write(source.join("etc/shadow"), "restored").unwrap();
    let mut store = small_store(&work.path().join("store"));
    let outcome = backup(&mut store, &source);

    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("passwd"), "outside").unwrap();
    fs::set_permissions(outside.join("passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    let target = work.path().join("target");
    let landed = target.join("source");
    fs::create_dir_all(landed.join("etc")).unwrap();
    for name in ODD_NAMES {
        symlink(&outside, landed.join(OsStr::from_bytes(name))).unwrap();
    }
    // Where files go, a link and another name of a file outside: both are
    // replaced, neither written through.
    symlink(outside.join("passwd"), landed.join("etc/passwd")).unwrap();
    fs::hard_link(outside.join("passwd"), landed.join("etc/shadow")).unwrap();

    for _ in 0..2 {
        let restored = store
            .restore_to_dir(
                &outcome.snapshot,
                &source.display().to_string(),
                &target,
                2,
                &Progress::default(),
                RestoreOptions::default(),
            )
            .unwrap();
        let mut refused: Vec<Vec<u8>> = restored
            .failed
            .iter()
            .map(|(path, why)| {
                assert!(
                    why.contains("a symbolic link where the snapshot has a directory"),
                    "{path}: {why}"
                );
                path.rsplit('/').next().unwrap().as_bytes().to_vec()
            })
            .collect();
        refused.sort();
        let mut expected: Vec<Vec<u8>> = ODD_NAMES
            .iter()
            .map(|n| String::from_utf8_lossy(n).as_bytes().to_vec())
            .collect();
        expected.sort();
        assert_eq!(refused, expected, "{:?}", restored.failed);
        for name in ODD_NAMES {
            let there = fs::symlink_metadata(landed.join(OsStr::from_bytes(name))).unwrap();
            assert!(there.file_type().is_symlink(), "the link is left as it was");
        }
        assert_eq!(fs::read(landed.join("etc/passwd")).unwrap(), b"restored");
        assert_eq!(fs::read(landed.join("etc/shadow")).unwrap(), b"restored");
        assert!(
            fs::symlink_metadata(landed.join("etc/passwd"))
                .unwrap()
                .is_file()
        );
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"], "nothing new outside");
        assert_eq!(fs::read(outside.join("passwd")).unwrap(), b"outside");
        let mode = fs::metadata(outside.join("passwd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600, "nothing outside chmod'ed");
    }
}

/// Whether this test may make device nodes; outside CI, a test not run as
/// root says what it skips. In CI (`CI=true`) tests run as root, so not
/// being root fails.
fn root_or_note(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI runs the tests as root: {what} needs it"
    );
    eprintln!("note: not root, so {what} is not tested");
    false
}

#[test]
fn setuid_bits_devices_fifos_and_owners_are_kept_only_when_asked() {
    use nix::sys::stat::{Mode, SFlag};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    fs::create_dir_all(source.join("shared")).unwrap();
    fs::write(source.join("su"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(source.join("su"), fs::Permissions::from_mode(0o4755)).unwrap();
    // A second name of it: dropped once, linked as it was.
    fs::hard_link(source.join("su"), source.join("su again")).unwrap();
    fs::set_permissions(source.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    nix::unistd::mkfifo(&source.join("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    let root = root_or_note("restoring device nodes and owners");
    if root {
        nix::sys::stat::mknod(
            &source.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        fs::write(source.join("theirs"), "someone else's").unwrap();
        std::os::unix::fs::lchown(source.join("theirs"), Some(4321), Some(4321)).unwrap();
    }
    let mut store = small_store(&work.path().join("store"));
    let outcome = backup(&mut store, &source);
    let what = source.display().to_string();

    // By default: no setuid/setgid bit, no device node, no FIFO, no owner.
    let plain = work.path().join("plain");
    let restored = store
        .restore_to_dir(
            &outcome.snapshot,
            &what,
            &plain,
            0,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert!(restored.failed.is_empty(), "{:?}", restored.failed);
    let expected = nightshift_store::Dropped {
        setid: 2,
        devices: u64::from(root),
        fifos: 1,
        owners: root,
    };
    assert_eq!(restored.dropped, expected);
    let at = plain.join("source");
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&at.join("su")), 0o755);
    assert_eq!(
        fs::metadata(at.join("su")).unwrap().ino(),
        fs::metadata(at.join("su again")).unwrap().ino()
    );
    assert_eq!(mode(&at.join("shared")), 0o775);
    assert!(!at.join("pipe").exists() && !at.join("null").exists());
    if root {
        assert_eq!(fs::metadata(at.join("theirs")).unwrap().uid(), 0);
    }

    // A tar stream drops the same, and carries no device node or FIFO.
    let mut tar = Vec::new();
    let streamed = store
        .restore_to_tar(
            &outcome.snapshot,
            &what,
            &mut tar,
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(
        streamed.dropped,
        nightshift_store::Dropped {
            owners: false,
            ..expected
        }
    );
    let members = |tar: &[u8]| -> Vec<(String, u32, tar::EntryType)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let header = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    header.mode().unwrap(),
                    header.entry_type(),
                )
            })
            .collect()
    };
    let listed = members(&tar);
    assert!(
        listed.iter().all(|(_, mode, kind)| mode & 0o6000 == 0
            && !matches!(kind, tar::EntryType::Char | tar::EntryType::Fifo)),
        "{listed:?}"
    );

    // Asked to keep them: all as recorded.
    let kept = work.path().join("kept");
    let restored = store
        .restore_to_dir(
            &outcome.snapshot,
            &what,
            &kept,
            0,
            &Progress::default(),
            KEEP,
        )
        .unwrap();
    assert!(restored.failed.is_empty(), "{:?}", restored.failed);
    assert_eq!(
        restored.dropped,
        nightshift_store::Dropped {
            owners: false,
            ..Default::default()
        }
    );
    let at = kept.join("source");
    assert_eq!(mode(&at.join("su")), 0o4755);
    assert_eq!(mode(&at.join("shared")), 0o2775);
    let pipe = fs::symlink_metadata(at.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    if root {
        let null = fs::symlink_metadata(at.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, mode(&source.join("null")));
        let theirs = fs::metadata(at.join("theirs")).unwrap();
        assert_eq!((theirs.uid(), theirs.gid()), (4321, 4321));
    }
    let mut tar = Vec::new();
    let streamed = store
        .restore_to_tar(&outcome.snapshot, &what, &mut tar, KEEP)
        .unwrap();
    assert!(!streamed.dropped.any());
    let listed = members(&tar);
    assert!(
        listed
            .iter()
            .any(|(p, mode, _)| p == "source/su" && *mode == 0o4755),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|(p, _, kind)| p == "source/pipe" && *kind == tar::EntryType::Fifo)
    );
    if root {
        assert!(
            listed
                .iter()
                .any(|(p, _, kind)| p == "source/null" && *kind == tar::EntryType::Char)
        );
    }
}
