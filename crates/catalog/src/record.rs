//! Recording a run as it happens: the run, one job per host, the steps of
//! each job. Every call is one short write transaction, so a controller
//! killed mid-run leaves rows that say `running`; [`Catalog::interrupt`]
//! turns them into `interrupted` on the next start.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Catalog, CatalogError, stamp};

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

/// What `interrupt` found left running by a controller that died.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interrupted {
    pub runs: u64,
    pub jobs: u64,
    pub steps: u64,
}

impl Catalog {
    pub async fn begin_run(&self, run: &NewRun<'_>) -> Result<RunId, CatalogError> {
        let id = sqlx::query_scalar(
            "INSERT INTO runs (playbook, trigger, operator, window, started, status)
             VALUES (?, ?, ?, ?, ?, 'running') RETURNING id",
        )
        .bind(run.playbook)
        .bind(run.trigger.as_str())
        .bind(run.operator)
        .bind(run.window)
        .bind(stamp(run.started))
        .fetch_one(&self.writer)
        .await?;
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
        let at = stamp(finished);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE jobs SET status = ?, error_kind = ?, finished = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(error_kind)
            .bind(&at)
            .bind(job.0)
            .execute(&mut *tx)
            .await?;
        // A patch counts when an update step of this job succeeded.
        sqlx::query(
            "UPDATE hosts SET last_job_id = ?1, last_job_status = ?2, last_seen = ?3,
                 last_error_kind = ?4,
                 last_patch_at = CASE WHEN EXISTS (SELECT 1 FROM steps
                     WHERE job_id = ?1 AND kind = 'update' AND status = 'ok')
                     THEN ?3 ELSE last_patch_at END,
                 last_patch_job_id = CASE WHEN EXISTS (SELECT 1 FROM steps
                     WHERE job_id = ?1 AND kind = 'update' AND status = 'ok')
                     THEN ?1 ELSE last_patch_job_id END
             WHERE id = (SELECT host_id FROM jobs WHERE id = ?1)",
        )
        .bind(job.0)
        .bind(status.as_str())
        .bind(&at)
        .bind(error_kind)
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

    /// Marks what a dead controller left running as interrupted. Call it
    /// once at start-up, before any new run begins.
    pub async fn interrupt(&self, now: DateTime<Utc>) -> Result<Interrupted, CatalogError> {
        let at = stamp(now);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut done = Interrupted::default();
        for (table, count) in [
            ("steps", &mut done.steps),
            ("jobs", &mut done.jobs),
            ("runs", &mut done.runs),
        ] {
            let statuses = if table == "runs" {
                "('running')"
            } else {
                "('running', 'pending')"
            };
            let sql = format!(
                "UPDATE {table} SET status = 'interrupted', finished = COALESCE(finished, ?)
                 WHERE status IN {statuses}"
            );
            *count = sqlx::query(&sql)
                .bind(&at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(done)
    }
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
