//! The catalog file itself: created, migrated and reopened, earlier schema
//! versions upgraded with their data, and an audit log that cannot be
//! rewritten.

use nightshift_catalog::{CATALOG_FILE, Catalog};

#[tokio::test]
async fn creates_migrates_and_reopens_a_real_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CATALOG_FILE);

    let catalog = Catalog::open(&path).await.expect("open new catalog");
    assert_eq!(
        catalog.schema_version().await.expect("version"),
        Catalog::expected_schema_version()
    );
    catalog
        .audit(
            "alice",
            "store key add",
            &serde_json::json!({"key_file": "/root/k", "new_passphrase": "hunter22", "hosts": [{"token": "t"}]}),
            "ok",
        )
        .await
        .expect("audit");
    catalog.close().await;

    assert!(path.is_file(), "the catalog is a file on disk");
    let reopened = Catalog::open(&path).await.expect("reopen");
    assert_eq!(reopened.audit_len().await.expect("count"), 1);
    reopened.close().await;
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("raw connection");
    let written: String = sqlx::query_scalar("SELECT arguments FROM audit_log")
        .fetch_one(&mut conn)
        .await
        .expect("the entry");
    assert!(
        !written.contains("hunter22") && !written.contains("\"t\""),
        "{written}"
    );
    assert!(written.contains("[redacted]"), "{written}");
}

#[tokio::test]
async fn audit_log_refuses_to_be_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CATALOG_FILE);
    let catalog = Catalog::open(&path).await.expect("open");
    catalog
        .audit("bob", "restore", &serde_json::json!({}), "ok")
        .await
        .expect("audit");
    catalog.close().await;

    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("raw connection");
    let err = sqlx::query("DELETE FROM audit_log")
        .execute(&mut conn)
        .await
        .expect_err("deleting audit rows must fail");
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// A catalog made at each earlier schema version, with data in it, is
/// brought up to date by opening it, and its data survives.
#[tokio::test]
async fn every_earlier_schema_version_upgrades_with_its_data() {
    use sqlx::Connection;
    let all = sqlx::migrate::Migrator::new(std::path::Path::new("../../migrations"))
        .await
        .expect("migrations");
    let latest = Catalog::expected_schema_version();
    for version in all.iter().map(|m| m.version).filter(|v| *v < latest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CATALOG_FILE);
        let mut older = sqlx::migrate::Migrator::new(std::path::Path::new("../../migrations"))
            .await
            .expect("migrations");
        older.migrations = older
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        older
            .run(&mut conn)
            .await
            .expect("migrate to the older version");
        // Data every version has had since 0001.
        for sql in [
            "INSERT INTO hosts (id, name, first_seen, last_seen) VALUES (1, 'web1', '2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z')",
            "INSERT INTO runs (id, playbook, trigger, started, finished, status) VALUES (7, 'web-patch', 'schedule', '2026-01-02T02:00:00.000Z', '2026-01-02T02:10:00.000Z', 'ok')",
            "INSERT INTO jobs (id, run_id, host_id, batch, status, started, finished) VALUES (1, 7, 1, 1, 'ok', '2026-01-02T02:00:00.000Z', '2026-01-02T02:10:00.000Z')",
            "INSERT INTO steps (job_id, position, name, kind, status, attempts, output_head) VALUES (1, 0, 'patch', 'update', 'ok', 1, 'done')",
            "INSERT INTO audit_log (at, actor, action, arguments, outcome) VALUES ('2026-01-02T02:00:00.000Z', 'cron', 'run', '{}', 'ok')",
        ] {
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .expect("fixture row");
        }
        conn.close().await.expect("close");

        let catalog = Catalog::open(&path).await.expect("upgrade");
        assert_eq!(catalog.schema_version().await.expect("version"), latest);
        let detail = catalog
            .run_detail(7)
            .await
            .expect("detail")
            .expect("run 7 survived");
        assert_eq!(detail.jobs[0].host, "web1", "from version {version}");
        assert_eq!(detail.jobs[0].steps[0].output_tail.as_deref(), Some("done"));
        assert_eq!(catalog.audit_len().await.expect("audit"), 1);
        assert_eq!(catalog.fleet_state().await.expect("fleet").len(), 1);
        catalog.close().await;
    }
}
