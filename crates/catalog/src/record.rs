//! Recording a run as it happens: the run, one job per host, the steps of
//! each job. Every call is one short write transaction, so a controller
//! killed mid-run leaves rows that say `running`; [`Catalog::interrupt`]
//! turns them into `interrupted` on the next start.

use crate::orphans::{instance_of, this_host};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite};

use crate::{Catalog, CatalogError, TriggerState, stamp};

/// How much of a step's output is kept forever, at each end.
pub const OUTPUT_EDGE: usize = 4096;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What started a run.
    Trigger { Schedule => "schedule", Manual => "manual", Api => "api" }
);
text_enum!(
    RunStatus { Running => "running", Ok => "ok", Failed => "failed", Halted => "halted", Interrupted => "interrupted" }
);
text_enum!(
    JobStatus {
        Pending => "pending", Running => "running", Ok => "ok", Failed => "failed",
        Skipped => "skipped", Deferred => "deferred", Interrupted => "interrupted",
    }
);
text_enum!(
    StepStatus {
        Pending => "pending", Running => "running", Ok => "ok", Failed => "failed",
        Skipped => "skipped", Interrupted => "interrupted",
    }
);
text_enum!(
    StepKind { Command => "command", Update => "update", Backup => "backup", Verify => "verify", Reboot => "reboot" }
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RunId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct JobId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct StepId(pub i64);

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub playbook: &'a str,
    pub trigger: Trigger,
    pub operator: Option<&'a str>,
    pub window: Option<&'a str>,
    pub started: DateTime<Utc>,
    pub cause: RunCause<'a>,
}

/// What a run was started for, tied to the run in the same transaction
/// that records it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunCause<'a> {
    /// What `runs.schedule` shows: a schedule's key, `trigger:ID` or
    /// `deferred`.
    pub schedule: Option<&'a str>,
    /// The schedule fire it answers.
    pub fire: Option<i64>,
    /// The trigger request it answers, which becomes `started`.
    pub request: Option<i64>,
}

/// How a step ended.
#[derive(Debug, Clone)]
pub struct StepEnd<'a> {
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<&'a str>,
    pub attempts: u32,
    pub changed: bool,
    /// All of its output; the catalog keeps the head and tail forever and
    /// the whole for the output retention period.
    pub output: &'a [u8],
    pub finished: DateTime<Utc>,
}

/// Brings the hosts of the finished jobs given (a JSON array of job ids)
/// up to date: last job, and last patch when an update step succeeded.
const HOST_SUMMARY: &str = "UPDATE hosts SET last_job_id = j.id, last_job_status = j.status,
        last_seen = j.finished, last_error_kind = j.error_kind,
        last_patch_at = CASE WHEN j.patched THEN j.finished ELSE hosts.last_patch_at END,
        last_patch_job_id = CASE WHEN j.patched THEN j.id ELSE hosts.last_patch_job_id END
    FROM (SELECT jobs.id, jobs.host_id, jobs.status, jobs.error_kind, jobs.finished,
              EXISTS (SELECT 1 FROM steps s WHERE s.job_id = jobs.id
                      AND s.kind = 'update' AND s.status = 'ok') AS patched
          FROM jobs WHERE jobs.id IN (SELECT value FROM json_each(?1))
              -- A host skipped or deferred was not touched: its state stands.
              AND jobs.status NOT IN ('skipped', 'deferred')) AS j
    WHERE hosts.id = j.host_id";

/// Rows per multi-row INSERT, within SQLite's 32,766 bound values.
const ROWS: usize = 2_000;

/// A host's job and its steps, finished: what the engine flushes in one
/// transaction when it records a batch of hosts at once.
#[derive(Debug, Clone)]
pub struct FinishedJob<'a> {
    pub host: &'a str,
    pub batch: u32,
    pub status: JobStatus,
    pub error_kind: Option<&'a str>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub steps: Vec<FinishedStep<'a>>,
}

#[derive(Debug, Clone)]
pub struct FinishedStep<'a> {
    pub name: &'a str,
    pub kind: StepKind,
    pub started: DateTime<Utc>,
    pub end: StepEnd<'a>,
}

impl Catalog {
    /// Records a run as started, with its schedule, fire and trigger
    /// request, all or nothing.
    pub async fn begin_run(&self, run: &NewRun<'_>) -> Result<RunId, CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let id = sqlx::query_scalar(
            "INSERT INTO runs (playbook, trigger, operator, window, started, status, schedule,
                 controller, controller_pid, controller_instance)
             VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?) RETURNING id",
        )
        .bind(run.playbook)
        .bind(run.trigger.as_str())
        .bind(run.operator)
        .bind(run.window)
        .bind(stamp(run.started))
        .bind(run.cause.schedule)
        .bind(this_host())
        .bind(std::process::id())
        .bind(instance_of(i64::from(std::process::id())))
        .fetch_one(&mut *tx)
        .await?;
        if let Some(fire) = run.cause.fire {
            sqlx::query("UPDATE schedule_fires SET run_id = ? WHERE id = ?")
                .bind(id)
                .bind(fire)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(request) = run.cause.request {
            sqlx::query(
                "UPDATE trigger_requests SET state = ?, detail = NULL, run_id = ?, updated = ?
                 WHERE id = ?",
            )
            .bind(TriggerState::Started.as_str())
            .bind(id)
            .bind(stamp(run.started))
            .bind(request)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RunId(id))
    }

    /// Starts a host's job in a run, recording the host if it is new.
    pub async fn begin_job(
        &self,
        run: RunId,
        host: &str,
        address: Option<&str>,
        batch: u32,
        started: DateTime<Utc>,
    ) -> Result<JobId, CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let at = stamp(started);
        let host_id: i64 = sqlx::query_scalar(
            "INSERT INTO hosts (name, address, first_seen, last_seen) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen,
                 address = COALESCE(excluded.address, hosts.address)
             RETURNING id",
        )
        .bind(host)
        .bind(address)
        .bind(&at)
        .bind(&at)
        .fetch_one(&mut *tx)
        .await?;
        let id = sqlx::query_scalar(
            "INSERT INTO jobs (run_id, host_id, batch, status, started)
             VALUES (?, ?, ?, 'running', ?) RETURNING id",
        )
        .bind(run.0)
        .bind(host_id)
        .bind(batch)
        .bind(&at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(JobId(id))
    }

    pub async fn begin_step(
        &self,
        job: JobId,
        position: u32,
        name: &str,
        kind: StepKind,
        started: DateTime<Utc>,
    ) -> Result<StepId, CatalogError> {
        let id = sqlx::query_scalar(
            "INSERT INTO steps (job_id, position, name, kind, status, started)
             VALUES (?, ?, ?, ?, 'running', ?) RETURNING id",
        )
        .bind(job.0)
        .bind(position)
        .bind(name)
        .bind(kind.as_str())
        .bind(stamp(started))
        .fetch_one(&self.writer)
        .await?;
        Ok(StepId(id))
    }

    pub async fn finish_step(&self, step: StepId, end: &StepEnd<'_>) -> Result<(), CatalogError> {
        let (head, tail) = edges(end.output);
        let at = stamp(end.finished);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE steps SET status = ?, exit_code = ?, signal = ?, attempts = ?, changed = ?,
                 finished = ?, output_head = ?, output_tail = ?
             WHERE id = ?",
        )
        .bind(end.status.as_str())
        .bind(end.exit_code)
        .bind(end.signal)
        .bind(end.attempts)
        .bind(end.changed)
        .bind(&at)
        .bind(head)
        .bind(tail)
        .bind(step.0)
        .execute(&mut *tx)
        .await?;
        if end.output.len() > 2 * OUTPUT_EDGE {
            sqlx::query(
                "INSERT OR REPLACE INTO step_output (step_id, at, output) VALUES (?, ?, ?)",
            )
            .bind(step.0)
            .bind(&at)
            .bind(end.output)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends a job and brings its host's latest state up to date.
    pub async fn finish_job(
        &self,
        job: JobId,
        status: JobStatus,
        error_kind: Option<&str>,
        finished: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        self.finish_job_saying(job, status, error_kind, None, finished)
            .await
    }

    /// Ends a job with a word on why it ended so: deferred to its window,
    /// skipped, cut short.
    pub async fn finish_job_saying(
        &self,
        job: JobId,
        status: JobStatus,
        error_kind: Option<&str>,
        detail: Option<&str>,
        finished: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let at = stamp(finished);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE jobs SET status = ?, error_kind = ?, detail = ?, finished = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(error_kind)
        .bind(detail)
        .bind(&at)
        .bind(job.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(HOST_SUMMARY)
            .bind(format!("[{}]", job.0))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        halted_because: Option<&str>,
        finished: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE runs SET status = ?, halted_because = ?, finished = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(halted_because)
            .bind(stamp(finished))
            .bind(run.0)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Records many finished jobs of a run, with their steps, in one
    /// transaction: a few multi-row statements rather than a dozen
    /// round trips per host. Returns the jobs' ids in the order given.
    pub async fn record_jobs(
        &self,
        run: RunId,
        jobs: &[FinishedJob<'_>],
    ) -> Result<Vec<JobId>, CatalogError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let hosts = upsert_hosts(&mut tx, jobs).await?;
        let mut ids = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO jobs (run_id, host_id, batch, status, error_kind, started, finished) ",
            );
            insert.push_values(chunk, |mut b, job| {
                b.push_bind(run.0)
                    .push_bind(hosts[job.host])
                    .push_bind(job.batch)
                    .push_bind(job.status.as_str())
                    .push_bind(job.error_kind)
                    .push_bind(stamp(job.started))
                    .push_bind(stamp(job.finished));
            });
            insert.push(" RETURNING id, host_id");
            let rows: Vec<(i64, i64)> = insert.build_query_as().fetch_all(&mut *tx).await?;
            let by_host: HashMap<i64, i64> =
                rows.into_iter().map(|(id, host)| (host, id)).collect();
            ids.extend(chunk.iter().map(|job| JobId(by_host[&hosts[job.host]])));
        }
        let steps: Vec<(JobId, u32, &FinishedStep<'_>)> = jobs
            .iter()
            .zip(&ids)
            .flat_map(|(job, id)| (0u32..).zip(&job.steps).map(move |(n, s)| (*id, n, s)))
            .collect();
        for chunk in steps.chunks(ROWS) {
            insert_steps(&mut tx, chunk).await?;
        }
        let list = format!(
            "[{}]",
            ids.iter()
                .map(|id| id.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        sqlx::query(HOST_SUMMARY)
            .bind(list)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids)
    }
}

type Tx<'c> = sqlx::Transaction<'c, Sqlite>;

/// Records the jobs' hosts (new ones first seen now); returns their ids.
async fn upsert_hosts<'j>(
    tx: &mut Tx<'_>,
    jobs: &[FinishedJob<'j>],
) -> Result<HashMap<&'j str, i64>, CatalogError> {
    let mut names: Vec<&str> = jobs.iter().map(|j| j.host).collect();
    names.sort_unstable();
    names.dedup();
    let now = stamp(Utc::now());
    for chunk in names.chunks(ROWS) {
        let mut upsert =
            QueryBuilder::<Sqlite>::new("INSERT INTO hosts (name, first_seen, last_seen) ");
        upsert.push_values(chunk, |mut b, name| {
            b.push_bind(*name).push_bind(&now).push_bind(&now);
        });
        upsert.push(" ON CONFLICT (name) DO NOTHING");
        upsert.build().execute(&mut **tx).await?;
    }
    let json = serde_json::to_string(&names).expect("names serialize");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, id FROM hosts WHERE name IN (SELECT value FROM json_each(?))")
            .bind(json)
            .fetch_all(&mut **tx)
            .await?;
    let ids: HashMap<String, i64> = rows.into_iter().collect();
    Ok(names.into_iter().map(|n| (n, ids[n])).collect())
}

/// Inserts finished steps, and the full output of those with long output.
async fn insert_steps(
    tx: &mut Tx<'_>,
    steps: &[(JobId, u32, &FinishedStep<'_>)],
) -> Result<(), CatalogError> {
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO steps (job_id, position, name, kind, status, exit_code, signal, attempts,
             changed, started, finished, output_head, output_tail) ",
    );
    insert.push_values(steps, |mut b, (job, position, step)| {
        let (head, tail) = edges(step.end.output);
        b.push_bind(job.0)
            .push_bind(*position)
            .push_bind(step.name)
            .push_bind(step.kind.as_str())
            .push_bind(step.end.status.as_str())
            .push_bind(step.end.exit_code)
            .push_bind(step.end.signal)
            .push_bind(step.end.attempts)
            .push_bind(step.end.changed)
            .push_bind(stamp(step.started))
            .push_bind(stamp(step.end.finished))
            .push_bind(head)
            .push_bind(tail);
    });
    // RETURNING gives rows in no promised order: match them by key.
    insert.push(" RETURNING id, job_id, position");
    let rows: Vec<(i64, i64, u32)> = insert.build_query_as().fetch_all(&mut **tx).await?;
    let ids: HashMap<(i64, u32), i64> = rows.into_iter().map(|(id, j, p)| ((j, p), id)).collect();
    let long: Vec<_> = steps
        .iter()
        .filter(|(_, _, s)| s.end.output.len() > 2 * OUTPUT_EDGE)
        .map(|step| (ids[&(step.0.0, step.1)], step))
        .collect();
    for chunk in long.chunks(ROWS) {
        let mut output =
            QueryBuilder::<Sqlite>::new("INSERT INTO step_output (step_id, at, output) ");
        output.push_values(chunk, |mut b, (id, (_, _, s))| {
            b.push_bind(*id)
                .push_bind(stamp(s.end.finished))
                .push_bind(s.end.output);
        });
        output.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The first and last [`OUTPUT_EDGE`] bytes of an output, as text; the
/// whole when it is short enough that they would overlap.
fn edges(output: &[u8]) -> (String, Option<String>) {
    if output.len() <= 2 * OUTPUT_EDGE {
        return (String::from_utf8_lossy(output).into_owned(), None);
    }
    let head = String::from_utf8_lossy(&output[..OUTPUT_EDGE]).into_owned();
    let tail = String::from_utf8_lossy(&output[output.len() - OUTPUT_EDGE..]).into_owned();
    (head, Some(tail))
}
