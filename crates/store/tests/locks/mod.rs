//! Store locks: shared ones coexist and an exclusive one is refused while
//! they are held; a dead process's lock is cleared, another host's or an
//! unreadable one only by unlocking all.

use std::fs;
use std::path::Path;

use nightshift_store::StoreError;

use crate::common::*;

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
