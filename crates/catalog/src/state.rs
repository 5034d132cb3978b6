//! What runs find on hosts (packages, pending reboots) and what the store
//! and technicians do (snapshots, restores, verifications).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::record::JobId;
use crate::{Catalog, CatalogError, stamp};

/// One package as an update or check step saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageState {
    pub name: String,
    pub installed: Option<String>,
    /// The version an upgrade would bring, if one is available.
    pub upgradable: Option<String>,
    pub security: bool,
}

/// What an update changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub security: bool,
}

/// The catalog's copy of a snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub host: String,
    pub time: DateTime<Utc>,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub parent: Option<String>,
    pub files: u64,
    pub bytes_total: u64,
    pub new_bytes_stored: u64,
    pub job: Option<JobId>,
    pub damaged_paths: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreRecord {
    pub at: DateTime<Utc>,
    pub operator: String,
    pub snapshot: String,
    pub paths: Vec<String>,
    pub target_host: String,
    pub target_path: String,
    pub files: u64,
    pub bytes: u64,
    /// `ok`, `failed` or `partial`.
    pub outcome: String,
    /// `all`, `some` or `none`: how much of what landed was hashed and found equal.
    pub verified: String,
    pub error: Option<String>,
}

/// Keeps `pending_updates` in step with a host's package list just
/// written at `?2`: upgrades no longer offered end there, and so does an
/// open one whose security flag changed (the history keeps what was
/// offered when). New ones start at the package's `pending_since`, or at
/// `?2` when they replace one just ended; open ones follow the version
/// now offered.
const PENDING_HISTORY: [&str; 4] = [
    "UPDATE pending_updates SET until = ?2
     WHERE host_id = ?1 AND until IS NULL AND name NOT IN
         (SELECT name FROM packages WHERE host_id = ?1 AND upgradable IS NOT NULL)",
    "UPDATE pending_updates SET until = ?2
     WHERE host_id = ?1 AND until IS NULL AND EXISTS
         (SELECT 1 FROM packages p WHERE p.host_id = ?1 AND p.name = pending_updates.name
              AND p.upgradable IS NOT NULL AND p.security <> pending_updates.security)",
    "UPDATE pending_updates SET version = p.upgradable
     FROM packages p
     WHERE pending_updates.host_id = ?1 AND pending_updates.until IS NULL AND ?2 = ?2
         AND p.host_id = ?1 AND p.name = pending_updates.name AND p.upgradable IS NOT NULL",
    "INSERT INTO pending_updates (host_id, name, version, security, since)
     SELECT p.host_id, p.name, p.upgradable, p.security,
         CASE WHEN EXISTS (SELECT 1 FROM pending_updates e
                           WHERE e.host_id = ?1 AND e.name = p.name AND e.until = ?2)
              THEN ?2 ELSE COALESCE(p.pending_since, ?2) END
     FROM packages p
     WHERE p.host_id = ?1 AND p.upgradable IS NOT NULL AND NOT EXISTS
         (SELECT 1 FROM pending_updates u WHERE u.host_id = ?1 AND u.name = p.name AND u.until IS NULL)",
];

/// A backup check (`store_check`) or a restore test (`restore_test`).
#[derive(Debug, Clone)]
pub struct Verification<'a> {
    pub kind: &'a str,
    /// `None` for a check of the whole store.
    pub host: Option<&'a str>,
    pub snapshot: Option<&'a str>,
    pub ok: bool,
    pub figures: &'a serde_json::Value,
    pub at: DateTime<Utc>,
    /// The job that ran it, when a playbook did.
    pub job: Option<JobId>,
}

impl Catalog {
    /// Replaces a host's package list with what a step saw at `seen`,
    /// keeping for each pending upgrade when it was first seen available.
    pub async fn record_packages(
        &self,
        host: &str,
        packages: &[PackageState],
        seen: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let at = stamp(seen);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let host_id = host_id(&mut tx, host).await?;
        for package in packages {
            sqlx::query(
                "INSERT INTO packages (host_id, name, installed, upgradable, security, pending_since, seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?4 IS NULL THEN NULL ELSE ?6 END, ?6)
                 ON CONFLICT (host_id, name) DO UPDATE SET
                     installed = excluded.installed, upgradable = excluded.upgradable,
                     security = excluded.security, seen = excluded.seen,
                     pending_since = CASE WHEN excluded.upgradable IS NULL THEN NULL
                         ELSE COALESCE(packages.pending_since, excluded.pending_since) END",
            )
            .bind(host_id)
            .bind(&package.name)
            .bind(&package.installed)
            .bind(&package.upgradable)
            .bind(package.security)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM packages WHERE host_id = ? AND seen <> ?")
            .bind(host_id)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        for statement in PENDING_HISTORY {
            sqlx::query(statement)
                .bind(host_id)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records what an update job changed, with how long each upgrade had
    /// been pending, and clears those packages' pending state.
    pub async fn record_package_changes(
        &self,
        job: JobId,
        host: &str,
        changes: &[PackageChange],
        at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let at = stamp(at);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let host_id = host_id(&mut tx, host).await?;
        for change in changes {
            sqlx::query(
                "INSERT INTO package_changes
                     (job_id, host_id, name, from_version, to_version, security, pending_since, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                     (SELECT pending_since FROM packages WHERE host_id = ?2 AND name = ?3), ?7)",
            )
            .bind(job.0)
            .bind(host_id)
            .bind(&change.name)
            .bind(&change.from)
            .bind(&change.to)
            .bind(change.security)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO packages (host_id, name, installed, seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (host_id, name) DO UPDATE SET installed = excluded.installed,
                     upgradable = NULL, pending_since = NULL, security = 0, seen = excluded.seen",
            )
            .bind(host_id)
            .bind(&change.name)
            .bind(&change.to)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE pending_updates SET until = ?3, job_id = ?4
                 WHERE host_id = ?1 AND name = ?2 AND until IS NULL",
            )
            .bind(host_id)
            .bind(&change.name)
            .bind(&at)
            .bind(job.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records whether a host needs a reboot; the first time it is seen
    /// needing one is kept as `since`.
    pub async fn set_reboot_required(
        &self,
        host: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let host_id = host_id(&mut tx, host).await?;
        match reason {
            Some(reason) => {
                sqlx::query(
                    "INSERT INTO reboot_required (host_id, since, reason) VALUES (?, ?, ?)
                     ON CONFLICT (host_id) DO UPDATE SET reason = excluded.reason",
                )
                .bind(host_id)
                .bind(stamp(at))
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO reboot_periods (host_id, since, reason)
                     SELECT ?1, ?2, ?3 WHERE NOT EXISTS
                         (SELECT 1 FROM reboot_periods WHERE host_id = ?1 AND until IS NULL)",
                )
                .bind(host_id)
                .bind(stamp(at))
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM reboot_required WHERE host_id = ?")
                    .bind(host_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE reboot_periods SET until = ?2 WHERE host_id = ?1 AND until IS NULL",
                )
                .bind(host_id)
                .bind(stamp(at))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a snapshot (or updates the copy), and the host's last backup.
    pub async fn record_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        insert_snapshot(&mut tx, snapshot).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes the snapshot tables say what the store says: `store` is every
    /// snapshot in it. Rows of snapshots the store no longer has are marked
    /// forgotten, never deleted (reports look back). Returns how many rows
    /// were added or changed, and how many were marked forgotten.
    pub async fn rebuild_snapshots(
        &self,
        store: &[SnapshotRecord],
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut changed = 0;
        for snapshot in store {
            changed += insert_snapshot(&mut tx, snapshot).await?;
        }
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS present (id TEXT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM present").execute(&mut *tx).await?;
        for snapshot in store {
            sqlx::query("INSERT OR IGNORE INTO present (id) VALUES (?)")
                .bind(&snapshot.id)
                .execute(&mut *tx)
                .await?;
        }
        let forgotten = sqlx::query(
            "UPDATE snapshots SET forgotten = ? WHERE forgotten IS NULL
             AND id NOT IN (SELECT id FROM present)",
        )
        .bind(stamp(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((changed, forgotten))
    }

    pub async fn record_restore(&self, restore: &RestoreRecord) -> Result<i64, CatalogError> {
        let id = sqlx::query_scalar(
            "INSERT INTO restores (at, operator, snapshot_id, paths, target_host, target_path,
                 files, bytes, outcome, verified, error)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(stamp(restore.at))
        .bind(&restore.operator)
        .bind(&restore.snapshot)
        .bind(json(&restore.paths))
        .bind(&restore.target_host)
        .bind(&restore.target_path)
        .bind(restore.files as i64)
        .bind(restore.bytes as i64)
        .bind(&restore.outcome)
        .bind(&restore.verified)
        .bind(&restore.error)
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    /// Records a store check or a restore test, with its figures.
    pub async fn record_verification(&self, v: &Verification<'_>) -> Result<i64, CatalogError> {
        let id = sqlx::query_scalar(
            "INSERT INTO verifications (at, kind, host, snapshot_id, outcome, figures, job_id)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(stamp(v.at))
        .bind(v.kind)
        .bind(v.host)
        .bind(v.snapshot)
        .bind(if v.ok { "ok" } else { "failed" })
        .bind(v.figures.to_string())
        .bind(v.job.map(|j| j.0))
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    /// Deletes full step output older than `before`; heads and tails stay.
    pub async fn prune_output(&self, before: DateTime<Utc>) -> Result<u64, CatalogError> {
        Ok(sqlx::query("DELETE FROM step_output WHERE at < ?")
            .bind(stamp(before))
            .execute(&self.writer)
            .await?
            .rows_affected())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// The host's id, recording the host if this is the first word of it.
async fn host_id(tx: &mut Tx<'_>, host: &str) -> Result<i64, CatalogError> {
    let now = stamp(Utc::now());
    Ok(sqlx::query_scalar(
        "INSERT INTO hosts (name, first_seen, last_seen) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(host)
    .bind(&now)
    .bind(&now)
    .fetch_one(&mut **tx)
    .await?)
}

async fn insert_snapshot(tx: &mut Tx<'_>, s: &SnapshotRecord) -> Result<u64, CatalogError> {
    let time = stamp(s.time);
    let changed = sqlx::query(
        "INSERT INTO snapshots (id, host, time, paths, tags, parent, files, bytes_total,
             new_bytes_stored, run_id, job_id, damaged_paths)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
             (SELECT run_id FROM jobs WHERE id = ?10), ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET damaged_paths = excluded.damaged_paths, forgotten = NULL,
             job_id = COALESCE(snapshots.job_id, excluded.job_id),
             run_id = COALESCE(snapshots.run_id, excluded.run_id)
         WHERE snapshots.damaged_paths IS NOT excluded.damaged_paths
             OR snapshots.forgotten IS NOT NULL
             OR (snapshots.job_id IS NULL AND excluded.job_id IS NOT NULL)",
    )
    .bind(&s.id)
    .bind(&s.host)
    .bind(&time)
    .bind(json(&s.paths))
    .bind(json(&s.tags))
    .bind(&s.parent)
    .bind(s.files as i64)
    .bind(s.bytes_total as i64)
    .bind(s.new_bytes_stored as i64)
    .bind(s.job.map(|j| j.0))
    .bind(s.damaged_paths.map(|d| d as i64))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let host_id = host_id(tx, &s.host).await?;
    sqlx::query(
        "UPDATE hosts SET last_backup_at = ?1, last_backup_snapshot = ?2
         WHERE id = ?3 AND (last_backup_at IS NULL OR last_backup_at < ?1)",
    )
    .bind(&time)
    .bind(&s.id)
    .bind(host_id)
    .execute(&mut **tx)
    .await?;
    Ok(changed)
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).expect("strings serialize")
}
