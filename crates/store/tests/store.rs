//! The store end to end on real files: backup, restore, check.

#![allow(
    clippy::print_stderr,
    reason = "a test says which of its parts this machine skips"
)]
#![allow(clippy::unwrap_used)] // a test fails loudly on any error

mod common;
mod swaps;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::*;
use nightshift_store::{CheckOptions, Problem, Progress, RestoreOptions, Store, StoreError};
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

/// Every file under `root`, concatenated.
fn all_bytes(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.extend(fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn an_encrypted_store_shows_neither_content_nor_names() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    fs::create_dir_all(&source).unwrap();
    let secret = noise(50_000, 77);
    fs::write(source.join("payroll-2026.csv"), &secret).unwrap();
    let probe = &secret[20_000..20_064];
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);

    let sealed_root = work.path().join("sealed");
    let mut sealed = small_store(&sealed_root);
    let outcome = backup(&mut sealed, &source);
    let bytes = all_bytes(&sealed_root);
    assert!(
        !contains(&bytes, probe),
        "file content readable in the store"
    );
    assert!(
        !contains(&bytes, b"payroll-2026"),
        "file name readable in the store"
    );
    assert!(
        !contains(&bytes, outcome.snapshot.snapshot.host.as_bytes()),
        "host readable"
    );

    // The same check sees the content in an unencrypted store, so it can
    // fail. (Names are in zstd-compressed trees there, so not comparable.)
    let plain_root = work.path().join("plain");
    let mut plain = plain_store(&plain_root);
    backup(&mut plain, &source);
    let bytes = all_bytes(&plain_root);
    assert!(contains(&bytes, probe));
    let target = work.path().join("target");
    let snapshot = plain.find_snapshot("latest").unwrap();
    plain
        .restore_to_dir(
            &snapshot,
            "/",
            &target,
            0,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(
        fs::read(landed(&target, &source).join("payroll-2026.csv")).unwrap(),
        secret
    );
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    small_store(&root);
    let wrong = Store::open(&root, Some(&nightshift_store::Passphrase::new("guess"))).unwrap_err();
    assert!(
        matches!(wrong, StoreError::WrongPassphrase { .. }),
        "{wrong}"
    );
    assert!(wrong.to_string().contains("no key of the store"), "{wrong}");
    let missing = Store::open(&root, None).unwrap_err();
    assert!(
        matches!(missing, StoreError::PassphraseNeeded { .. }),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("NIGHTSHIFT_PASSPHRASE"),
        "{missing}"
    );
}

#[test]
fn keys_can_be_added_and_removed_but_not_the_last() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = small_store(&root);
    let second = nightshift_store::Passphrase::new("second key");
    let added = store.add_key(&second).unwrap();
    assert_eq!(store.keys().unwrap().len(), 2);
    let first = store
        .keys()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| *id != added)
        .unwrap();
    store.remove_key(&first[..8]).unwrap();
    assert!(
        Store::open(&root, Some(&passphrase())).is_err(),
        "the removed key no longer opens"
    );
    let reopened = Store::open(&root, Some(&second)).unwrap();
    let last = reopened.remove_key(&added[..8]).unwrap_err();
    assert!(matches!(last, StoreError::LastKey), "{last}");
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

fn plant_lock(root: &Path, host: &str, pid: u32, kind: &str) {
    let text = format!(
        r#"{{"kind":"{kind}","host":"{host}","pid":{pid},"time":"2026-11-20T03:00:00Z","command":"backup"}}"#
    );
    fs::create_dir_all(root.join("locks")).unwrap();
    fs::write(root.join("locks").join(format!("planted-{pid}")), text).unwrap();
}

#[test]
fn shared_locks_coexist_and_an_exclusive_one_waits_for_none() {
    use nightshift_store::LockKind;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = small_store(&root);
    let backup = store.lock(LockKind::Shared, "backup").unwrap();
    let check = store.lock(LockKind::Shared, "check").unwrap();
    let err = store
        .lock(LockKind::Exclusive, "rebuild-index")
        .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("`backup`") || err.to_string().contains("`check`"),
        "{err}"
    );
    assert_eq!(
        store.locks().unwrap().len(),
        2,
        "the refused lock left no file"
    );
    drop((backup, check));
    assert!(store.locks().unwrap().is_empty());
    let exclusive = store.lock(LockKind::Exclusive, "rebuild-index").unwrap();
    assert!(store.lock(LockKind::Shared, "backup").is_err());
    drop(exclusive);
}

#[test]
fn a_dead_process_lock_is_cleared_and_another_hosts_needs_unlock_all() {
    use nightshift_store::LockKind;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = small_store(&root);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let here = nix::unistd::gethostname().unwrap().into_string().unwrap();
    plant_lock(&root, &here, dead_pid, "exclusive");
    let lock = store.lock(LockKind::Shared, "backup").unwrap();
    assert_eq!(lock.cleared.len(), 1, "the dead process's lock is cleared");
    assert_eq!(lock.cleared[0].pid, dead_pid);
    drop(lock);

    plant_lock(&root, "elsewhere.example", 4242, "exclusive");
    let err = store.lock(LockKind::Shared, "backup").unwrap_err();
    assert!(err.to_string().contains("elsewhere.example"), "{err}");
    assert!(
        store.unlock(false).unwrap().is_empty(),
        "another host's lock is not judged from here"
    );
    assert_eq!(store.unlock(true).unwrap().len(), 1);
    store.lock(LockKind::Shared, "backup").unwrap();
}

#[test]
fn an_unreadable_lock_blocks_with_advice_and_unlock_all_removes_it() {
    use nightshift_store::LockKind;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = small_store(&root);
    fs::create_dir_all(root.join("locks")).unwrap();
    fs::write(root.join("locks/1-1"), b"{ half a lock").unwrap();
    let err = store.lock(LockKind::Shared, "backup").unwrap_err();
    assert!(err.to_string().contains("unlock --all"), "{err}");
    assert!(store.unlock(false).unwrap().is_empty());
    let removed = store.unlock(true).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(removed[0].info.is_err());
    assert!(
        removed[0].to_string().contains("unreadable lock"),
        "{}",
        removed[0]
    );
    assert!(!root.join("locks/1-1").exists());
    store.lock(LockKind::Shared, "backup").unwrap();
}

#[test]
fn a_config_edited_to_turn_encryption_off_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    small_store(&root);
    let config = fs::read_to_string(root.join("config")).unwrap();
    fs::write(
        root.join("config"),
        config.replace("xchacha20-poly1305", "none"),
    )
    .unwrap();
    let err = Store::open(&root, None).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("the config was changed"), "{err}");
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

fn packs_on_disk(store: &Store) -> std::collections::BTreeSet<String> {
    store
        .packs_on_disk()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
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

#[test]
fn references_name_snapshots_by_prefix_host_latest_and_time() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    fs::create_dir_all(&source).unwrap();
    let mut store = small_store(&work.path().join("store"));
    let mut taken = Vec::new();
    for (host, text) in [("web1", "one"), ("web2", "two"), ("web1", "three")] {
        fs::write(source.join("f"), text).unwrap();
        let options = nightshift_store::BackupOptions {
            host: host.into(),
            ..Default::default()
        };
        let outcome = store
            .backup_paths(
                std::slice::from_ref(&source),
                &options,
                &Progress::default(),
            )
            .unwrap();
        taken.push(outcome.snapshot);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let id = |spec: &str| store.find_snapshot(spec).map(|e| e.id);
    assert_eq!(id("latest").unwrap(), taken[2].id);
    assert_eq!(id("web2/latest").unwrap(), taken[1].id);
    assert_eq!(id("web1@latest").unwrap(), taken[2].id);
    assert_eq!(id(&taken[0].id[..10]).unwrap(), taken[0].id);
    let at = |e: &nightshift_store::SnapshotEntry| e.snapshot.time.to_rfc3339();
    // At or before: the first web1 snapshot's own time names it, and so
    // does any moment before the second.
    assert_eq!(id(&format!("web1@{}", at(&taken[0]))).unwrap(), taken[0].id);
    assert_eq!(id(&format!("web1@{}", at(&taken[1]))).unwrap(), taken[0].id);
    assert_eq!(id(&format!("web1@{}", at(&taken[2]))).unwrap(), taken[2].id);
    let before = (taken[0].snapshot.time - chrono::TimeDelta::seconds(5)).to_rfc3339();
    let err = id(&format!("web1@{before}")).unwrap_err();
    assert!(matches!(err, StoreError::NoSnapshotBefore { .. }), "{err}");
    assert!(
        err.to_string().contains("the first of that host is from"),
        "{err}"
    );
    assert!(matches!(
        id("web3/latest").unwrap_err(),
        StoreError::NoSuchSnapshot(_)
    ));
    assert!(matches!(
        id("web1@zz").unwrap_err(),
        StoreError::NoSuchSnapshot(_)
    ));
}

#[test]
fn diff_names_what_was_added_removed_and_changed_and_find_every_version() {
    use nightshift_store::Change;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("site");
    fs::create_dir_all(source.join("conf.d")).unwrap();
    fs::create_dir_all(source.join("static")).unwrap();
    fs::write(source.join("conf.d/app.conf"), "listen 80;\n").unwrap();
    fs::write(source.join("conf.d/old.conf"), "gone soon\n").unwrap();
    fs::write(source.join("static/logo.svg"), "<svg/>").unwrap();
    let mut store = small_store(&work.path().join("store"));
    let first = backup(&mut store, &source).snapshot;
    fs::write(source.join("conf.d/app.conf"), "listen 8080;\n").unwrap();
    fs::remove_file(source.join("conf.d/old.conf")).unwrap();
    fs::create_dir_all(source.join("new/deep")).unwrap();
    fs::write(source.join("new/deep/extra.conf"), "x").unwrap();
    let second = backup(&mut store, &source).snapshot;
    fs::write(source.join("conf.d/app.conf"), "listen 80;\n").unwrap();
    let third = backup(&mut store, &source).snapshot;

    let root = source.to_str().unwrap();
    let diff = store.diff(&first, &second, root).unwrap();
    let seen: Vec<(Change, String, Option<u64>, Option<u64>)> = diff
        .iter()
        .map(|d| {
            (
                d.change,
                d.path.strip_prefix(root).unwrap().to_string(),
                d.old_size,
                d.new_size,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                Change::Changed,
                "/conf.d/app.conf".into(),
                Some(11),
                Some(13)
            ),
            (Change::Removed, "/conf.d/old.conf".into(), Some(10), None),
            (Change::Added, "/new".into(), None, Some(0)),
            (Change::Added, "/new/deep".into(), None, Some(0)),
            (Change::Added, "/new/deep/extra.conf".into(), None, Some(1)),
        ],
        "the unchanged static/ is not listed (nor looked into)"
    );
    assert!(store.diff(&second, &second, root).unwrap().is_empty());

    let conf = |_: &str, name: &[u8]| name.ends_with(b".conf");
    let all = [first.clone(), second.clone(), third.clone()];
    let versions = store.find(&all, &conf, true).unwrap();
    let listed: Vec<(String, u64, Vec<&str>)> = versions
        .iter()
        .map(|v| {
            (
                v.path.strip_prefix(root).unwrap().to_string(),
                v.size,
                v.snapshots.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    // app.conf went 80 → 8080 → 80: the third holds the first version
    // again (same content, but a new mtime: a version of its own).
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert_eq!(listed[0].0, "/conf.d/app.conf");
    assert_eq!(
        (listed[0].1, listed[0].2.clone()),
        (11, vec![first.id.as_str()])
    );
    assert_eq!(
        (listed[1].1, listed[1].2.clone()),
        (13, vec![second.id.as_str()])
    );
    assert_eq!(
        (listed[2].1, listed[2].2.clone()),
        (11, vec![third.id.as_str()])
    );
    assert_eq!(
        (listed[3].0.as_str(), listed[3].2.clone()),
        ("/conf.d/old.conf", vec![first.id.as_str()])
    );
    assert_eq!(
        (listed[4].0.as_str(), listed[4].2.clone()),
        (
            "/new/deep/extra.conf",
            vec![second.id.as_str(), third.id.as_str()]
        )
    );
    // By full path, without the memo, the same answer for one file.
    let by_path = |path: &str, _: &[u8]| path.ends_with("/new/deep/extra.conf");
    let one = store.find(&all, &by_path, false).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].snapshots.len(), 2);
}
