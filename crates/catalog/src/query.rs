//! Reading the record back: runs, one run in detail, one host's history,
//! and where every host of the fleet stands now.

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::Row;

use crate::{Catalog, CatalogError};

/// Which runs `runs` lists.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub host: Option<String>,
    pub playbook: Option<String>,
    /// RFC 3339 time or date; runs started at or after it.
    pub since: Option<String>,
    pub failed_only: bool,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub playbook: String,
    pub trigger: String,
    pub operator: Option<String>,
    pub window: Option<String>,
    pub started: String,
    pub finished: Option<String>,
    pub status: String,
    pub halted_because: Option<String>,
    pub hosts: i64,
    pub hosts_failed: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepRow {
    pub job_id: i64,
    pub position: i64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub signal: Option<String>,
    pub attempts: i64,
    pub changed: bool,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub output_tail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    pub id: i64,
    pub host: String,
    pub batch: i64,
    pub status: String,
    pub error_kind: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Why it was deferred, skipped or cut short, in words.
    pub detail: Option<String>,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub jobs: Vec<JobDetail>,
}

/// One event in a host's maintenance record.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HistoryEvent {
    pub at: String,
    /// `run`, `patch`, `backup`, `restore`, `reboot-required` or `verification`.
    pub kind: String,
    pub detail: String,
    pub outcome: String,
    pub run_id: Option<i64>,
}

/// Where one host stands now.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HostState {
    pub host: String,
    pub last_seen: String,
    pub last_job_status: Option<String>,
    pub last_error_kind: Option<String>,
    pub last_patch_at: Option<String>,
    pub last_backup_at: Option<String>,
    pub last_backup_snapshot: Option<String>,
    pub pending_updates: i64,
    pub pending_security: i64,
    pub oldest_pending_security: Option<String>,
    pub reboot_required_since: Option<String>,
}

pub(crate) const RUN_COLUMNS: &str = "r.id, r.playbook, r.trigger, r.operator, r.window, r.started,
    r.finished, r.status, r.halted_because,
    (SELECT COUNT(*) FROM jobs j WHERE j.run_id = r.id) AS hosts,
    (SELECT COUNT(*) FROM jobs j WHERE j.run_id = r.id
        AND j.status IN ('failed', 'interrupted')) AS hosts_failed";

impl Catalog {
    /// Runs, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, CatalogError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r
             WHERE (?1 IS NULL OR r.playbook = ?1)
               AND (?2 IS NULL OR r.started >= ?2)
               AND (?3 = 0 OR r.status IN ('failed', 'halted', 'interrupted')
                    OR EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id
                               AND j.status IN ('failed', 'interrupted')))
               AND (?4 IS NULL OR EXISTS (SELECT 1 FROM jobs j JOIN hosts h ON h.id = j.host_id
                               WHERE j.run_id = r.id AND h.name = ?4))
             ORDER BY r.started DESC, r.id DESC LIMIT ?5"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(&filter.playbook)
            .bind(&filter.since)
            .bind(filter.failed_only)
            .bind(&filter.host)
            .bind(if filter.limit == 0 {
                -1
            } else {
                i64::from(filter.limit)
            })
            .fetch_all(&self.readers)
            .await?)
    }

    /// One run, per host, per step.
    pub async fn run_detail(&self, run: i64) -> Result<Option<RunDetail>, CatalogError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = ?");
        let Some(row) = sqlx::query_as::<_, RunRow>(AssertSqlSafe(sql))
            .bind(run)
            .fetch_optional(&self.readers)
            .await?
        else {
            return Ok(None);
        };
        let mut steps: Vec<StepRow> = sqlx::query_as(
            "SELECT s.job_id, s.position, s.name, s.kind, s.status, s.exit_code, s.signal,
                 s.attempts, s.changed, s.started, s.finished,
                 COALESCE(s.output_tail, s.output_head) AS output_tail
             FROM steps s JOIN jobs j ON j.id = s.job_id WHERE j.run_id = ?
             ORDER BY s.job_id, s.position",
        )
        .bind(run)
        .fetch_all(&self.readers)
        .await?;
        let jobs = sqlx::query(
            "SELECT j.id, h.name, j.batch, j.status, j.error_kind, j.started, j.finished, j.detail
             FROM jobs j JOIN hosts h ON h.id = j.host_id WHERE j.run_id = ?
             ORDER BY j.batch, h.name",
        )
        .bind(run)
        .fetch_all(&self.readers)
        .await?;
        let jobs = jobs
            .into_iter()
            .map(|j| {
                let id: i64 = j.get(0);
                let (mine, rest): (Vec<_>, Vec<_>) = steps.drain(..).partition(|s| s.job_id == id);
                steps = rest;
                JobDetail {
                    id,
                    host: j.get(1),
                    batch: j.get(2),
                    status: j.get(3),
                    error_kind: j.get(4),
                    started: j.get(5),
                    finished: j.get(6),
                    detail: j.get(7),
                    steps: mine,
                }
            })
            .collect();
        Ok(Some(RunDetail { run: row, jobs }))
    }

    /// A host's maintenance record, newest first: runs that touched it,
    /// patches applied, backups, restores to it, checks and restore tests.
    pub async fn history(&self, host: &str, limit: u32) -> Result<Vec<HistoryEvent>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT * FROM (
               SELECT j.started AS at, 'run' AS kind, r.playbook AS detail,
                      j.status || COALESCE(' (' || j.error_kind || ')', '') AS outcome, r.id AS run_id
                 FROM jobs j JOIN runs r ON r.id = j.run_id JOIN hosts h ON h.id = j.host_id
                 WHERE h.name = ?1
               UNION ALL
               SELECT c.at, 'patch', c.name || ' ' || COALESCE(c.from_version, '-') || ' -> '
                      || COALESCE(c.to_version, '-') || CASE WHEN c.security THEN ' (security)' ELSE '' END,
                      'applied', j.run_id
                 FROM package_changes c JOIN jobs j ON j.id = c.job_id JOIN hosts h ON h.id = c.host_id
                 WHERE h.name = ?1
               UNION ALL
               SELECT s.time, 'backup', substr(s.id, 1, 8) || ' ' || s.paths,
                      CASE WHEN s.damaged_paths IS NOT NULL THEN 'damaged'
                           WHEN s.forgotten IS NOT NULL THEN 'forgotten' ELSE 'ok' END, s.run_id
                 FROM snapshots s WHERE s.host = ?1
               UNION ALL
               SELECT t.at, 'restore', substr(t.snapshot_id, 1, 8) || ' -> ' || t.target_path
                      || ' by ' || t.operator, t.outcome || ', verified ' || t.verified, NULL
                 FROM restores t WHERE t.target_host = ?1
               UNION ALL
               SELECT v.at, 'verification', v.kind, v.outcome, NULL
                 FROM verifications v WHERE v.host = ?1
               UNION ALL
               SELECT b.since, 'reboot-required', b.reason, 'pending', NULL
                 FROM reboot_required b JOIN hosts h ON h.id = b.host_id WHERE h.name = ?1
             ) ORDER BY at DESC LIMIT ?2",
        )
        .bind(host)
        .bind(if limit == 0 { -1 } else { i64::from(limit) })
        .fetch_all(&self.readers)
        .await?)
    }

    /// Every host's latest state, from the per-host summary the writes
    /// keep current: one row per host, no scan of runs or steps.
    pub async fn fleet_state(&self) -> Result<Vec<HostState>, CatalogError> {
        Ok(sqlx::query_as(
            "WITH pending AS (
                 SELECT host_id, COUNT(*) AS updates, SUM(security) AS security,
                     MIN(CASE WHEN security THEN pending_since END) AS oldest_security
                 FROM packages WHERE upgradable IS NOT NULL GROUP BY host_id)
             SELECT h.name AS host, h.last_seen, h.last_job_status, h.last_error_kind,
                 h.last_patch_at, h.last_backup_at, h.last_backup_snapshot,
                 COALESCE(p.updates, 0) AS pending_updates,
                 COALESCE(p.security, 0) AS pending_security,
                 p.oldest_security AS oldest_pending_security,
                 b.since AS reboot_required_since
             FROM hosts h
             LEFT JOIN pending p ON p.host_id = h.id
             LEFT JOIN reboot_required b ON b.host_id = h.id
             ORDER BY h.name",
        )
        .fetch_all(&self.readers)
        .await?)
    }

    /// Whether a host has ever been seen by a run or a backup.
    pub async fn knows_host(&self, host: &str) -> Result<bool, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM hosts WHERE name = ?)")
                .bind(host)
                .fetch_one(&self.readers)
                .await?,
        )
    }
}
