//! Snapshots by reference (prefix, host, latest, time), and what changed
//! between them.

use std::fs;

use nightshift_store::{Progress, StoreError};

use crate::common::*;

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
