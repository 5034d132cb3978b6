//! The evidence a compliance report weighs, as the catalog's history says
//! it stood at a given moment. Every query takes that moment (`at`) and
//! reads only what had happened by then, so a report "as of" a past date
//! reads what it would have read on that date.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{Catalog, CatalogError, stamp};

/// Error kinds of a job that never reached its host: such a job does not
/// count as the host being seen.
const NOT_REACHED: &str =
    "('unreachable', 'auth_failed', 'host_key_unknown', 'host_key_changed', 'connection_lost')";

/// One host's latest facts at a moment: enough to say, per policy,
/// whether it complied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub host: String,
    pub first_seen: Option<DateTime<Utc>>,
    /// The last job that reached the host.
    pub last_seen: Option<DateTime<Utc>>,
    pub last_backup: Option<DateTime<Utc>>,
    pub last_restore_test: Option<DateTime<Utc>>,
    /// The last backup check of this host's snapshots (a fleet-wide store
    /// check counts for every host).
    pub last_backup_check: Option<DateTime<Utc>>,
    /// When the oldest security update still pending was first seen.
    pub security_pending_since: Option<DateTime<Utc>>,
    pub other_pending_since: Option<DateTime<Utc>>,
    pub reboot_pending_since: Option<DateTime<Utc>>,
}

/// An update pending at the moment asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingUpdate {
    pub host: String,
    pub package: String,
    pub version: String,
    pub security: bool,
    pub since: DateTime<Utc>,
}

/// The runs and reasons behind one host's figures, for the per-host
/// evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostTrail {
    /// The run of the last job that reached the host.
    pub last_seen_run: Option<i64>,
    /// The snapshot and run of the last backup.
    pub last_backup_snapshot: Option<String>,
    pub last_backup_run: Option<i64>,
    /// The latest job after the last backup that did not succeed: its run,
    /// when it ended and why.
    pub failed_since_backup: Option<FailedJob>,
    pub last_restore_test_run: Option<i64>,
    pub last_patch: Option<DateTime<Utc>>,
    pub last_patch_run: Option<i64>,
    pub reboot_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedJob {
    pub run: i64,
    pub status: String,
    pub at: Option<DateTime<Utc>>,
    pub error_kind: Option<String>,
    pub detail: Option<String>,
}

/// A security update applied in a period, with how long it had waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedUpdate {
    pub host: String,
    pub package: String,
    pub pending_since: DateTime<Utc>,
    pub applied: DateTime<Utc>,
    pub run: Option<i64>,
}

fn time(
    row: &sqlx::sqlite::SqliteRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, CatalogError> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok().map(|d| d.to_utc())))
}

impl Catalog {
    /// Every host the catalog knew of at `at`, with its facts then.
    pub async fn host_facts(&self, at: DateTime<Utc>) -> Result<Vec<HostFacts>, CatalogError> {
        let at = stamp(at);
        let fleet_check: Option<String> = sqlx::query_scalar(
            "SELECT MAX(at) FROM verifications
             WHERE host IS NULL AND kind = 'store_check' AND outcome = 'ok' AND at <= ?",
        )
        .bind(&at)
        .fetch_one(&self.readers)
        .await?;
        let sql = format!(
            "SELECT h.name, h.first_seen,
                 (SELECT j.finished FROM jobs j WHERE j.host_id = h.id AND j.started <= ?1
                      AND j.finished <= ?1 AND j.status IN ('ok', 'failed', 'interrupted')
                      AND COALESCE(j.error_kind, '') NOT IN {NOT_REACHED}
                  ORDER BY j.started DESC LIMIT 1) AS last_seen,
                 (SELECT MAX(s.time) FROM snapshots s WHERE s.host = h.name AND s.time <= ?1)
                     AS last_backup,
                 (SELECT MAX(v.at) FROM verifications v WHERE v.host = h.name
                      AND v.kind = 'restore_test' AND v.outcome = 'ok' AND v.at <= ?1)
                     AS last_restore_test,
                 (SELECT MAX(v.at) FROM verifications v WHERE v.host = h.name
                      AND v.kind = 'store_check' AND v.outcome = 'ok' AND v.at <= ?1)
                     AS last_backup_check,
                 (SELECT MIN(u.since) FROM pending_updates u WHERE u.host_id = h.id
                      AND u.since <= ?1 AND (u.until IS NULL OR u.until > ?1) AND u.security = 1)
                     AS security_pending_since,
                 (SELECT MIN(u.since) FROM pending_updates u WHERE u.host_id = h.id
                      AND u.since <= ?1 AND (u.until IS NULL OR u.until > ?1) AND u.security = 0)
                     AS other_pending_since,
                 (SELECT MIN(r.since) FROM reboot_periods r WHERE r.host_id = h.id
                      AND r.since <= ?1 AND (r.until IS NULL OR r.until > ?1))
                     AS reboot_pending_since
             FROM hosts h
             -- A host's first sighting is when it was first recorded; its
             -- earliest job may say earlier (results recorded late).
             WHERE h.first_seen <= ?1
                 OR EXISTS (SELECT 1 FROM jobs j WHERE j.host_id = h.id AND j.started <= ?1)
             ORDER BY h.name"
        );
        let rows = sqlx::query(&sql).bind(&at).fetch_all(&self.readers).await?;
        let fleet_check = fleet_check.and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
        rows.iter()
            .map(|row| {
                let own_check = time(row, "last_backup_check")?;
                Ok(HostFacts {
                    host: row.try_get("name")?,
                    first_seen: time(row, "first_seen")?,
                    last_seen: time(row, "last_seen")?,
                    last_backup: time(row, "last_backup")?,
                    last_restore_test: time(row, "last_restore_test")?,
                    last_backup_check: own_check.max(fleet_check.map(|d| d.to_utc())),
                    security_pending_since: time(row, "security_pending_since")?,
                    other_pending_since: time(row, "other_pending_since")?,
                    reboot_pending_since: time(row, "reboot_pending_since")?,
                })
            })
            .collect()
    }

    /// Every update pending at `at`, oldest first per host.
    pub async fn pending_updates(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<PendingUpdate>, CatalogError> {
        let rows = sqlx::query(
            "SELECT h.name AS host, u.name, u.version, u.security, u.since
             FROM hosts h JOIN pending_updates u ON u.host_id = h.id
             WHERE u.since <= ?1 AND (u.until IS NULL OR u.until > ?1)
             ORDER BY h.name, u.since, u.name",
        )
        .bind(stamp(at))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingUpdate {
                    host: row.try_get("host")?,
                    package: row.try_get("name")?,
                    version: row.try_get("version")?,
                    security: row.try_get("security")?,
                    since: time(row, "since")?.unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The runs and reasons behind one host's figures at `at`.
    pub async fn host_trail(
        &self,
        host: &str,
        at: DateTime<Utc>,
    ) -> Result<HostTrail, CatalogError> {
        let at = stamp(at);
        let seen_sql = format!(
            "SELECT j.run_id FROM jobs j JOIN hosts h ON h.id = j.host_id
             WHERE h.name = ?1 AND j.started <= ?2 AND j.finished <= ?2
                 AND j.status IN ('ok', 'failed', 'interrupted')
                 AND COALESCE(j.error_kind, '') NOT IN {NOT_REACHED}
             ORDER BY j.started DESC LIMIT 1"
        );
        let last_seen_run = sqlx::query_scalar(&seen_sql)
            .bind(host)
            .bind(&at)
            .fetch_optional(&self.readers)
            .await?;
        let backup = sqlx::query(
            "SELECT id, time, run_id FROM snapshots WHERE host = ?1 AND time <= ?2
             ORDER BY time DESC LIMIT 1",
        )
        .bind(host)
        .bind(&at)
        .fetch_optional(&self.readers)
        .await?;
        let since_backup: String = match &backup {
            Some(row) => row.try_get("time")?,
            None => String::new(),
        };
        let failed = sqlx::query(
            "SELECT j.run_id, j.status, j.finished, j.error_kind, j.detail
             FROM jobs j JOIN hosts h ON h.id = j.host_id
             WHERE h.name = ?1 AND j.started > ?3 AND j.started <= ?2
                 AND j.status IN ('failed', 'interrupted', 'deferred')
             ORDER BY j.started DESC LIMIT 1",
        )
        .bind(host)
        .bind(&at)
        .bind(&since_backup)
        .fetch_optional(&self.readers)
        .await?;
        let failed_since_backup = failed
            .map(|row| -> Result<FailedJob, CatalogError> {
                Ok(FailedJob {
                    run: row.try_get("run_id")?,
                    status: row.try_get("status")?,
                    at: time(&row, "finished")?,
                    error_kind: row.try_get("error_kind")?,
                    detail: row.try_get("detail")?,
                })
            })
            .transpose()?;
        let last_restore_test_run = sqlx::query_scalar(
            "SELECT j.run_id FROM verifications v JOIN jobs j ON j.id = v.job_id
             WHERE v.host = ?1 AND v.kind = 'restore_test' AND v.outcome = 'ok' AND v.at <= ?2
             ORDER BY v.at DESC LIMIT 1",
        )
        .bind(host)
        .bind(&at)
        .fetch_optional(&self.readers)
        .await?;
        let patch = sqlx::query(
            "SELECT c.at, j.run_id FROM package_changes c JOIN hosts h ON h.id = c.host_id
                 LEFT JOIN jobs j ON j.id = c.job_id
             WHERE h.name = ?1 AND c.at <= ?2 ORDER BY c.at DESC LIMIT 1",
        )
        .bind(host)
        .bind(&at)
        .fetch_optional(&self.readers)
        .await?;
        let reboot_reason = sqlx::query_scalar(
            "SELECT r.reason FROM reboot_periods r JOIN hosts h ON h.id = r.host_id
             WHERE h.name = ?1 AND r.since <= ?2 AND (r.until IS NULL OR r.until > ?2)
             ORDER BY r.since LIMIT 1",
        )
        .bind(host)
        .bind(&at)
        .fetch_optional(&self.readers)
        .await?;
        Ok(HostTrail {
            last_seen_run,
            last_backup_snapshot: backup.as_ref().map(|r| r.try_get("id")).transpose()?,
            last_backup_run: backup
                .as_ref()
                .map(|r| r.try_get::<Option<i64>, _>("run_id"))
                .transpose()?
                .flatten(),
            failed_since_backup,
            last_restore_test_run,
            last_patch: patch.as_ref().map(|r| time(r, "at")).transpose()?.flatten(),
            last_patch_run: patch
                .as_ref()
                .map(|r| r.try_get::<Option<i64>, _>("run_id"))
                .transpose()?
                .flatten(),
            reboot_reason,
        })
    }

    /// Security updates applied after `from` and at or before `to`.
    pub async fn security_updates_applied(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AppliedUpdate>, CatalogError> {
        let rows = sqlx::query(
            "SELECT h.name AS host, c.name, c.pending_since, c.at, j.run_id
             FROM package_changes c JOIN hosts h ON h.id = c.host_id
                 LEFT JOIN jobs j ON j.id = c.job_id
             WHERE c.security = 1 AND c.at > ?1 AND c.at <= ?2 AND c.pending_since IS NOT NULL
             ORDER BY c.at",
        )
        .bind(stamp(from))
        .bind(stamp(to))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AppliedUpdate {
                    host: row.try_get("host")?,
                    package: row.try_get("name")?,
                    pending_since: time(row, "pending_since")?.unwrap_or_default(),
                    applied: time(row, "at")?.unwrap_or_default(),
                    run: row.try_get("run_id")?,
                })
            })
            .collect()
    }
}
