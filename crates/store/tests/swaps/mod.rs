//! Entries swapped between the walk's look at them and their opening: a
//! file for a link to a secret or for a FIFO, a directory for a link to a
//! directory outside the tree, before it is listed or before its files are
//! read. The swap is made by the store's test hook (feature `crafted`),
//! called just before each open, so every run races the same way: the race
//! is deterministic, not looked for across many backups. Last, the paths
//! given: a link on the way to one is refused, not followed.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nightshift_store::{BackupOutcome, NodeKind, Progress};

use crate::common::*;

const CANARY: &[u8] = b"canary: the secret no snapshot may hold";

/// A tree to back up (`source`, with `victim` and `dir/inner`) and beside
/// it `outside`, whose files hold the canary: `secret` and `inner`.
fn scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    fs::create_dir_all(source.join("dir")).unwrap();
    fs::write(source.join("victim"), "the user's own file").unwrap();
    fs::write(source.join("dir/inner"), "the user's own inner file").unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), CANARY).unwrap();
    fs::write(outside.join("inner"), CANARY).unwrap();
    (work, source, outside)
}

/// Backs up `source` into a new store at `root`, with `swap` called before
/// each open; fails if the backup takes more than 30 s (opening a FIFO to
/// read waits for a writer that never comes).
fn racing_backup(
    root: &Path,
    source: &Path,
    swap: impl Fn(&Path) + Send + Sync + 'static,
) -> BackupOutcome {
    let (root, source) = (root.to_path_buf(), source.to_path_buf());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut store = plain_store(&root);
        let outcome = store
            .backup_paths_with_swaps(&[source], &options(), &Progress::default(), swap)
            .unwrap();
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the backup ended within 30 s")
}

/// Replaces `path`, a file or directory, by what `make` puts there.
fn swap_at(path: &Path, make: impl Fn(&Path)) {
    if path.is_dir() {
        fs::remove_dir_all(path).unwrap();
    } else {
        fs::remove_file(path).unwrap();
    }
    make(path);
}

/// No restored file holds the canary, and `path` is skipped as changed.
fn assert_kept_out(root: &Path, outcome: &BackupOutcome, path: &Path) {
    let target = root.with_file_name("restored");
    plain_store_at(root)
        .restore_to_dir(
            &outcome.snapshot,
            "/",
            &target,
            0,
            &Progress::default(),
            nightshift_store::RestoreOptions::default(),
        )
        .unwrap();
    let restored = files_under(&target);
    assert!(!restored.is_empty(), "the rest of the tree is restored");
    for (file, bytes) in restored {
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY),
            "{} holds the canary",
            file.display()
        );
    }
    let label = path.display().to_string();
    assert!(
        outcome
            .skipped
            .iter()
            .any(|s| s.path == label && s.error.contains("changed during the backup")),
        "{label} is skipped as changed: {:?}",
        outcome.skipped
    );
}

fn plain_store_at(root: &Path) -> nightshift_store::Store {
    nightshift_store::Store::open(root, None).unwrap()
}

/// Every regular file under `dir` and its bytes; links are not followed.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = fs::symlink_metadata(&path).unwrap().file_type();
        if kind.is_dir() {
            out.extend(files_under(&path));
        } else if kind.is_file() {
            out.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn a_file_swapped_for_a_link_to_a_secret_is_skipped_not_followed() {
    let (work, source, outside) = scene();
    let victim = source.join("victim");
    let watched = victim.clone();
    let root = work.path().join("store");
    let outcome = racing_backup(&root, &source, move |path| {
        if path == watched {
            swap_at(path, |p| symlink(outside.join("secret"), p).unwrap());
        }
    });
    assert_kept_out(&root, &outcome, &victim);
}

#[test]
fn a_file_swapped_for_a_fifo_is_skipped_without_hanging() {
    let (work, source, _) = scene();
    let victim = source.join("victim");
    let watched = victim.clone();
    let root = work.path().join("store");
    let outcome = racing_backup(&root, &source, move |path| {
        if path == watched {
            let fifo = |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
            swap_at(path, fifo);
        }
    });
    assert_kept_out(&root, &outcome, &victim);
}

#[test]
fn a_directory_swapped_for_a_link_before_it_is_listed_is_skipped() {
    let (work, source, outside) = scene();
    let dir = source.join("dir");
    let watched = dir.clone();
    let root = work.path().join("store");
    let outcome = racing_backup(&root, &source, move |path| {
        if path == watched {
            swap_at(path, |p| symlink(&outside, p).unwrap());
        }
    });
    assert_kept_out(&root, &outcome, &dir);
}

#[test]
fn a_directory_swapped_for_a_link_before_its_files_are_read_is_not_followed() {
    let (work, source, outside) = scene();
    let (dir, inner) = (source.join("dir"), source.join("dir/inner"));
    let watched = inner.clone();
    let root = work.path().join("store");
    let outcome = racing_backup(&root, &source, move |path| {
        if path == watched {
            swap_at(&dir, |p| symlink(&outside, p).unwrap());
        }
    });
    assert_kept_out(&root, &outcome, &inner);
}

#[test]
fn a_path_given_through_a_link_is_refused_and_a_link_given_is_kept_as_one() {
    let (work, source, _) = scene();
    let link = work.path().join("link");
    symlink(&source, &link).unwrap();
    let mut store = plain_store(&work.path().join("store"));
    let err = store
        .backup_paths(&[link.join("dir")], &options(), &Progress::default())
        .unwrap_err();
    let named = format!("{} is a symbolic link", link.display());
    assert!(err.to_string().contains(&named), "{err}");

    let outcome = backup(&mut store, &link);
    let node = store
        .node_at(&outcome.snapshot, &link.display().to_string())
        .unwrap();
    assert_eq!(node.kind, NodeKind::Symlink);
    assert_eq!(node.target.as_deref(), Some(source.as_os_str().as_bytes()));
}
