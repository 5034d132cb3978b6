//! Backup snapshots in the catalog, rebuilt to follow the store.

use nightshift_catalog::SnapshotRecord;

use crate::{at, fresh};

fn snapshot(id: &str, host: &str, hour: u32) -> SnapshotRecord {
    SnapshotRecord {
        id: id.repeat(64 / id.len()),
        host: host.into(),
        time: at(hour),
        paths: vec!["/etc".into()],
        tags: vec![],
        parent: None,
        files: 10,
        bytes_total: 1000,
        new_bytes_stored: 100,
        job: None,
        damaged_paths: None,
    }
}

#[tokio::test]
async fn rebuilding_snapshots_follows_the_store() {
    let (_dir, catalog) = fresh().await;
    for s in [
        snapshot("a", "web1", 1),
        snapshot("b", "web1", 2),
        snapshot("c", "db1", 2),
    ] {
        catalog.record_snapshot(&s).await.expect("record");
    }
    // The store has lost b (forgotten) and gained d, and c is damaged.
    let mut damaged = snapshot("c", "db1", 2);
    damaged.damaged_paths = Some(3);
    let store = [snapshot("a", "web1", 1), damaged, snapshot("d", "web1", 4)];
    let (changed, forgotten) = catalog
        .rebuild_snapshots(&store, at(5))
        .await
        .expect("rebuild");
    assert_eq!((changed, forgotten), (2, 1));
    assert_eq!(
        catalog
            .rebuild_snapshots(&store, at(6))
            .await
            .expect("again"),
        (0, 0)
    );
    let history = catalog.history("web1", 0).await.expect("history");
    let backups: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "backup")
        .map(|e| (e.detail[..8].to_string(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        backups,
        [
            ("dddddddd".into(), "ok"),
            ("bbbbbbbb".into(), "forgotten"),
            ("aaaaaaaa".into(), "ok")
        ]
    );
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert_eq!(
        web1.last_backup_snapshot.as_deref(),
        Some("d".repeat(64).as_str())
    );
}
