//! The evidence a compliance report weighs, as the catalog's history says
//! it stood at a given moment. Every query takes that moment (`at`) and
//! reads only what had happened by then, so a report "as of" a past date
//! reads what it would have read on that date.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
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
    /// The run of the last backup.
    pub last_backup_run: Option<i64>,
    /// The latest job after the last backup that did not succeed: its run
    /// and why.
    pub failed_since_backup: Option<FailedJob>,
    pub last_restore_test_run: Option<i64>,
    pub last_patch_run: Option<i64>,
    pub reboot_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedJob {
    pub run: i64,
    pub status: String,
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
}

/// A host's name and its facts' times, as `host_facts` reads them.
type FactsRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn parse(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok().map(|d| d.to_utc()))
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
            "SELECT json_group_array(json_array(name, last_seen, last_backup,
                 last_restore_test, last_backup_check, security_pending_since,
                 other_pending_since, reboot_pending_since)) FROM (
             SELECT h.name,
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
             ORDER BY h.name)"
        );
        let rows: Vec<FactsRow> = self.json_rows(&sql, &[at]).await?;
        let fleet_check = parse(fleet_check.as_deref());
        Ok(rows
            .into_iter()
            .map(
                |(host, seen, backup, test, check, security, other, reboot)| HostFacts {
                    host,
                    last_seen: parse(seen.as_deref()),
                    last_backup: parse(backup.as_deref()),
                    last_restore_test: parse(test.as_deref()),
                    last_backup_check: parse(check.as_deref()).max(fleet_check),
                    security_pending_since: parse(security.as_deref()),
                    other_pending_since: parse(other.as_deref()),
                    reboot_pending_since: parse(reboot.as_deref()),
                },
            )
            .collect())
    }

    /// Every host the catalog has, whenever it was first recorded.
    pub async fn known_hosts(&self) -> Result<Vec<String>, CatalogError> {
        self.json_rows(
            "SELECT json_group_array(name ORDER BY name) FROM hosts",
            &[],
        )
        .await
    }

    /// Every update pending at `at`, oldest first per host.
    pub async fn pending_updates(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<PendingUpdate>, CatalogError> {
        let rows: Vec<(String, String, String, u8, String)> = self
            .json_rows(
                "SELECT json_group_array(json_array(host, name, version, security, since)
                     ORDER BY host, since, name) FROM (
                 SELECT h.name AS host, u.name, u.version, u.security, u.since
                 FROM hosts h JOIN pending_updates u ON u.host_id = h.id
                 WHERE u.since <= ?1 AND (u.until IS NULL OR u.until > ?1)
                 ORDER BY h.name, u.since, u.name)",
                &[stamp(at)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(host, package, version, security, since)| PendingUpdate {
                host,
                package,
                version,
                security: security == 1,
                since: parse(Some(&since)).unwrap_or_default(),
            })
            .collect())
    }

    /// The rows of a statement that gives them as one JSON array of
    /// arrays: handing thousands of rows one by one from SQLite's thread
    /// to ours costs more than reading them.
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        binds: &[String],
    ) -> Result<Vec<T>, CatalogError> {
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()));
        for value in binds {
            query = query.bind(value);
        }
        let text = query.fetch_one(&self.readers).await?;
        Ok(serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?)
    }

    /// The runs and reasons behind the figures of the hosts named, at `at`,
    /// in one statement.
    pub async fn host_trails(
        &self,
        hosts: &[String],
        at: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, HostTrail>, CatalogError> {
        let sql = format!(
            "SELECT t.*, f.run_id AS failed_run, f.status AS failed_status,
                 f.error_kind AS failed_kind, f.detail AS failed_detail
             FROM (SELECT h.name,
                 (SELECT j.run_id FROM jobs j WHERE j.host_id = h.id AND j.started <= ?2
                      AND j.finished <= ?2 AND j.status IN ('ok', 'failed', 'interrupted')
                      AND COALESCE(j.error_kind, '') NOT IN {NOT_REACHED}
                  ORDER BY j.started DESC LIMIT 1) AS last_seen_run,
                 (SELECT s.run_id FROM snapshots s WHERE s.host = h.name AND s.time <= ?2
                  ORDER BY s.time DESC LIMIT 1) AS backup_run,
                 (SELECT j.id FROM jobs j WHERE j.host_id = h.id AND j.started <= ?2
                      AND j.finished <= ?2 AND j.started > COALESCE((SELECT MAX(s.time) FROM snapshots s
                          WHERE s.host = h.name AND s.time <= ?2), '')
                      AND j.status IN ('failed', 'interrupted', 'deferred')
                  ORDER BY j.started DESC LIMIT 1) AS failed_job,
                 (SELECT (SELECT j.run_id FROM jobs j WHERE j.id = v.job_id)
                  FROM verifications v
                  WHERE v.host = h.name AND v.kind = 'restore_test' AND v.outcome = 'ok'
                      AND v.at <= ?2 ORDER BY v.at DESC LIMIT 1) AS last_restore_test_run,
                 (SELECT (SELECT j.run_id FROM jobs j WHERE j.id = c.job_id)
                  FROM package_changes c WHERE c.host_id = h.id AND c.at <= ?2
                  ORDER BY c.at DESC LIMIT 1) AS patch_run,
                 (SELECT r.reason FROM reboot_periods r WHERE r.host_id = h.id AND r.since <= ?2
                      AND (r.until IS NULL OR r.until > ?2) ORDER BY r.since LIMIT 1) AS reboot_reason
                 FROM hosts h WHERE h.name IN (SELECT value FROM json_each(?1))) AS t
             LEFT JOIN jobs f ON f.id = t.failed_job"
        );
        let names = serde_json::to_string(hosts).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(names)
            .bind(stamp(at))
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, trail(row)?)))
            .collect()
    }

    /// Security updates applied after `from` and at or before `to`.
    pub async fn security_updates_applied(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AppliedUpdate>, CatalogError> {
        let rows: Vec<(String, String, String, String)> = self
            .json_rows(
                "SELECT json_group_array(json_array(host, name, pending_since, at) ORDER BY at) FROM (
                 SELECT h.name AS host, c.name, c.pending_since, c.at
                 FROM package_changes c JOIN hosts h ON h.id = c.host_id
                 WHERE c.security = 1 AND c.at > ?1 AND c.at <= ?2 AND c.pending_since IS NOT NULL
                 ORDER BY c.at)",
                &[stamp(from), stamp(to)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(host, package, since, at)| AppliedUpdate {
                host,
                package,
                pending_since: parse(Some(&since)).unwrap_or_default(),
                applied: parse(Some(&at)).unwrap_or_default(),
            })
            .collect())
    }
}

fn trail(row: &sqlx::sqlite::SqliteRow) -> Result<HostTrail, CatalogError> {
    let failed_run: Option<i64> = row.try_get("failed_run")?;
    let failed_since_backup = match failed_run {
        Some(run) => Some(FailedJob {
            run,
            status: row.try_get("failed_status")?,
            error_kind: row.try_get("failed_kind")?,
            detail: row.try_get("failed_detail")?,
        }),
        None => None,
    };
    Ok(HostTrail {
        last_seen_run: row.try_get("last_seen_run")?,
        last_backup_run: row.try_get("backup_run")?,
        failed_since_backup,
        last_restore_test_run: row.try_get("last_restore_test_run")?,
        last_patch_run: row.try_get("patch_run")?,
        reboot_reason: row.try_get("reboot_reason")?,
    })
}
