//! What the daemon and the command line share through the database: host
//! leases, the schedules' fires, and runs asked for by `nightshift trigger`.
//! The catalog is the meeting point, so a `nightshift run` beside the daemon,
//! or a second controller, sees the same leases and requests.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::orphans::{controller_alive, this_host};
use crate::{Catalog, CatalogError, RunId, stamp};

/// Whether a run got a host for a playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    Taken,
    /// Another live run holds it.
    Held {
        run: i64,
        since: String,
    },
}

/// What became of a schedule's fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    Started,
    CaughtUp,
    Missed,
    Busy,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::CaughtUp => "caught_up",
            Self::Missed => "missed",
            Self::Busy => "busy",
        }
    }
}

/// One fire the daemon looked at.
#[derive(Debug, Clone)]
pub struct FireRecord<'a> {
    pub schedule: &'a str,
    pub playbook: &'a str,
    pub fire: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub detail: Option<String>,
}

/// A fire as the catalog has it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FireRow {
    pub id: i64,
    pub schedule: String,
    pub playbook: String,
    pub fire: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub run_id: Option<i64>,
}

/// A run asked for with `nightshift trigger`.
#[derive(Debug, Clone)]
pub struct NewTrigger<'a> {
    pub playbook: &'a str,
    pub host_limit: Option<&'a str>,
    pub ignore_window: bool,
    pub reason: Option<&'a str>,
    pub requested_by: &'a str,
    pub at: DateTime<Utc>,
}

/// Where a trigger request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    Pending,
    /// Its window is closed; it starts when the window opens.
    Waiting,
    Started,
    Refused,
}

impl TriggerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Waiting => "waiting",
            Self::Started => "started",
            Self::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TriggerRow {
    pub id: i64,
    pub playbook: String,
    pub host_limit: Option<String>,
    pub ignore_window: bool,
    pub reason: Option<String>,
    pub requested_by: String,
    pub requested_at: String,
    pub state: String,
    pub detail: Option<String>,
    pub run_id: Option<i64>,
}

/// A host whose latest job for a playbook was deferred: it still waits for
/// its window.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeferredHost {
    pub host: String,
    pub playbook: String,
    pub run_id: i64,
    pub since: String,
    pub detail: Option<String>,
}

/// The newest run of each playbook.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LastRun {
    pub playbook: String,
    pub run_id: i64,
    pub started: String,
    pub finished: Option<String>,
    pub status: String,
    pub halted_because: Option<String>,
}

/// The figures the Prometheus endpoint serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// (status, count) over all finished runs.
    pub runs: Vec<(String, i64)>,
    pub runs_in_progress: i64,
    /// (last job status, hosts).
    pub hosts: Vec<(String, i64)>,
    /// (host, last successful patch, last backup), RFC 3339.
    pub ages: Vec<(String, Option<String>, Option<String>)>,
    pub steps_in_flight: i64,
}

/// A lease's holder: run, controller host, pid, since, run status,
/// controller instance.
type Holder = (i64, String, i64, String, String, Option<String>);

const TRIGGER_COLUMNS: &str = "id, playbook, host_limit, ignore_window, reason, requested_by,
    requested_at, state, detail, run_id";

impl Catalog {
    /// Takes the lease on (`host`, `playbook`) for `run`, unless a live run
    /// holds it. A lease of a finished run, or of a controller on this
    /// machine that is gone, is taken over.
    pub async fn take_lease(
        &self,
        host: &str,
        playbook: &str,
        run: RunId,
        now: DateTime<Utc>,
    ) -> Result<Lease, CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let holder: Option<Holder> = sqlx::query_as(
            "SELECT l.run_id, l.controller, l.controller_pid, l.since, r.status,
                 r.controller_instance
             FROM host_leases l JOIN runs r ON r.id = l.run_id
             WHERE l.host = ? AND l.playbook = ?",
        )
        .bind(host)
        .bind(playbook)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((holder, controller, pid, since, status, instance)) = holder {
            let alive = controller != this_host() || controller_alive(pid, instance.as_deref());
            if holder != run.0 && status == "running" && alive {
                return Ok(Lease::Held { run: holder, since });
            }
        }
        sqlx::query(
            "INSERT OR REPLACE INTO host_leases
                 (host, playbook, run_id, controller, controller_pid, since)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(host)
        .bind(playbook)
        .bind(run.0)
        .bind(this_host())
        .bind(std::process::id())
        .bind(stamp(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Lease::Taken)
    }

    /// Gives the lease back, if `run` still holds it.
    pub async fn release_lease(
        &self,
        host: &str,
        playbook: &str,
        run: RunId,
    ) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM host_leases WHERE host = ? AND playbook = ? AND run_id = ?")
            .bind(host)
            .bind(playbook)
            .bind(run.0)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// How many leases are held (live or stale).
    pub async fn leases(&self) -> Result<i64, CatalogError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM host_leases")
            .fetch_one(&self.readers)
            .await?)
    }

    /// Up to when the daemon looked at a schedule's fires.
    pub async fn schedule_cursor(
        &self,
        schedule: &str,
    ) -> Result<Option<DateTime<Utc>>, CatalogError> {
        let at: Option<String> =
            sqlx::query_scalar("SELECT checked_until FROM schedule_cursors WHERE schedule = ?")
                .bind(schedule)
                .fetch_optional(&self.writer)
                .await?;
        Ok(at.and_then(|t| DateTime::parse_from_rfc3339(&t).ok().map(|t| t.to_utc())))
    }

    /// Records what became of fires and moves the schedule's cursor to
    /// `until`, in one transaction; returns the fires' ids in order.
    pub async fn record_fires(
        &self,
        schedule: &str,
        until: DateTime<Utc>,
        fires: &[FireRecord<'_>],
    ) -> Result<Vec<i64>, CatalogError> {
        let now = stamp(Utc::now());
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut ids = Vec::with_capacity(fires.len());
        for fire in fires {
            let id = sqlx::query_scalar(
                "INSERT INTO schedule_fires (schedule, playbook, fire, outcome, detail, at)
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(fire.schedule)
            .bind(fire.playbook)
            .bind(stamp(fire.fire))
            .bind(fire.outcome.as_str())
            .bind(&fire.detail)
            .bind(&now)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        sqlx::query(
            "INSERT INTO schedule_cursors (schedule, checked_until) VALUES (?, ?)
             ON CONFLICT (schedule) DO UPDATE SET checked_until = excluded.checked_until",
        )
        .bind(schedule)
        .bind(stamp(until))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// A schedule's fires, newest first.
    pub async fn fires(&self, schedule: &str, limit: u32) -> Result<Vec<FireRow>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT id, schedule, playbook, fire, outcome, detail, run_id FROM schedule_fires
             WHERE schedule = ? ORDER BY fire DESC, id DESC LIMIT ?",
        )
        .bind(schedule)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?)
    }

    /// Asks the daemon for a run, and writes the audit entry for it in the
    /// same transaction; returns the request's id.
    pub async fn request_trigger(&self, new: &NewTrigger<'_>) -> Result<i64, CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO trigger_requests
                 (playbook, host_limit, ignore_window, reason, requested_by, requested_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.playbook)
        .bind(new.host_limit)
        .bind(new.ignore_window)
        .bind(new.reason)
        .bind(new.requested_by)
        .bind(stamp(new.at))
        .fetch_one(&mut *tx)
        .await?;
        let action = if new.ignore_window {
            "trigger --ignore-window"
        } else {
            "trigger"
        };
        let arguments = serde_json::json!({
            "request": id,
            "playbook": new.playbook,
            "limit": new.host_limit,
            "ignore_window": new.ignore_window,
            "reason": new.reason,
        });
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, arguments, outcome)
             VALUES (?, ?, ?, ?, 'requested')",
        )
        .bind(stamp(new.at))
        .bind(new.requested_by)
        .bind(action)
        .bind(crate::redacted(&arguments).to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Claims a pending or waiting request for a run; `false` when another
    /// look (or another daemon) already did.
    pub async fn claim_trigger(&self, id: i64) -> Result<bool, CatalogError> {
        let claimed = sqlx::query(
            "UPDATE trigger_requests SET state = 'started', detail = NULL, updated = ?
             WHERE id = ? AND state IN ('pending', 'waiting')",
        )
        .bind(stamp(Utc::now()))
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// A run whose controller lost it (its task died): it, its jobs and
    /// steps read interrupted, and its leases are given back.
    pub async fn abandon_run(&self, run: RunId, now: DateTime<Utc>) -> Result<(), CatalogError> {
        self.interrupt_where(now, &format!("run_id = {}", run.0))
            .await?;
        sqlx::query("DELETE FROM host_leases WHERE run_id = ?")
            .bind(run.0)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Requests not yet started or refused, oldest first.
    pub async fn open_triggers(&self) -> Result<Vec<TriggerRow>, CatalogError> {
        let sql = format!(
            "SELECT {TRIGGER_COLUMNS} FROM trigger_requests
             WHERE state IN ('pending', 'waiting') ORDER BY id"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.writer)
            .await?)
    }

    pub async fn trigger(&self, id: i64) -> Result<Option<TriggerRow>, CatalogError> {
        let sql = format!("SELECT {TRIGGER_COLUMNS} FROM trigger_requests WHERE id = ?");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?)
    }

    /// Moves a request on, saying why: waiting or refused. (A request
    /// becomes started with the run that answers it: see `begin_run`.)
    pub async fn update_trigger(
        &self,
        id: i64,
        state: TriggerState,
        detail: Option<&str>,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE trigger_requests SET state = ?, detail = ?, updated = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(detail)
            .bind(stamp(Utc::now()))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Hosts whose latest job of a playbook was deferred, oldest first.
    pub async fn deferred_hosts(&self) -> Result<Vec<DeferredHost>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT h.name AS host, r.playbook, j.run_id, COALESCE(j.finished, j.started) AS since,
                 j.detail
             FROM jobs j JOIN runs r ON r.id = j.run_id JOIN hosts h ON h.id = j.host_id
             WHERE j.status = 'deferred'
               AND NOT EXISTS (SELECT 1 FROM jobs j2 JOIN runs r2 ON r2.id = j2.run_id
                               WHERE j2.host_id = j.host_id AND r2.playbook = r.playbook
                                 AND j2.id > j.id)
             ORDER BY j.id",
        )
        .fetch_all(&self.readers)
        .await?)
    }

    /// The newest run of every playbook.
    pub async fn last_runs(&self) -> Result<Vec<LastRun>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT r.playbook, r.id AS run_id, r.started, r.finished, r.status, r.halted_because
             FROM runs r
             WHERE r.id IN (SELECT MAX(id) FROM runs GROUP BY playbook)
             ORDER BY r.playbook",
        )
        .fetch_all(&self.readers)
        .await?)
    }

    /// Runs still going, oldest first.
    pub async fn running(&self) -> Result<Vec<crate::RunRow>, CatalogError> {
        let sql = format!(
            "SELECT {} FROM runs r WHERE r.status = 'running' ORDER BY r.id",
            crate::query::RUN_COLUMNS
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.readers)
            .await?)
    }

    /// What the metrics endpoint reports, read in one go.
    pub async fn figures(&self) -> Result<Figures, CatalogError> {
        let runs = sqlx::query_as(
            "SELECT status, COUNT(*) FROM runs WHERE status != 'running' GROUP BY status ORDER BY 1",
        )
            .fetch_all(&self.readers)
            .await?;
        let hosts = sqlx::query_as(
            "SELECT COALESCE(last_job_status, 'none'), COUNT(*) FROM hosts GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(&self.readers)
        .await?;
        let ages =
            sqlx::query_as("SELECT name, last_patch_at, last_backup_at FROM hosts ORDER BY name")
                .fetch_all(&self.readers)
                .await?;
        let steps_in_flight =
            sqlx::query_scalar("SELECT COUNT(*) FROM steps WHERE status = 'running'")
                .fetch_one(&self.readers)
                .await?;
        let runs_in_progress =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'running'")
                .fetch_one(&self.readers)
                .await?;
        Ok(Figures {
            runs,
            runs_in_progress,
            hosts,
            ages,
            steps_in_flight,
        })
    }
}
