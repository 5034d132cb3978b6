//! The catalog against a real SQLite file.

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
        .audit("alice", "check", "{}", "ok")
        .await
        .expect("audit");
    catalog.close().await;

    assert!(path.is_file(), "the catalog is a file on disk");
    let reopened = Catalog::open(&path).await.expect("reopen");
    assert_eq!(reopened.audit_len().await.expect("count"), 1);
}

#[tokio::test]
async fn audit_log_refuses_to_be_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CATALOG_FILE);
    let catalog = Catalog::open(&path).await.expect("open");
    catalog
        .audit("bob", "restore", "{}", "ok")
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
