//! Runs left running by a controller that is gone: how a controller is
//! known (host, pid, the process's start), and turning what it left into
//! `interrupted`.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use crate::{Catalog, CatalogError, stamp};

/// What `interrupt` found left running by a controller that died.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interrupted {
    pub runs: u64,
    pub jobs: u64,
    pub steps: u64,
}

impl Catalog {
    /// Marks everything left running as interrupted, whoever ran it. For
    /// a single controller at start-up; [`Catalog::interrupt_orphans`]
    /// leaves the runs of live processes alone.
    pub async fn interrupt(&self, now: DateTime<Utc>) -> Result<Interrupted, CatalogError> {
        self.interrupt_where(now, "1").await
    }

    /// Marks as interrupted the runs (with their jobs and steps) left
    /// running by a controller process that is gone: one on this host
    /// whose pid no longer exists, or one that did not record itself. Runs
    /// of other hosts' controllers cannot be judged from here and are left
    /// alone. Call it before a new run begins.
    pub async fn interrupt_orphans(&self, now: DateTime<Utc>) -> Result<Interrupted, CatalogError> {
        let running: Vec<Controlled> = sqlx::query_as(
            "SELECT id, controller, controller_pid, controller_instance
             FROM runs WHERE status = 'running'",
        )
        .fetch_all(&self.writer)
        .await?;
        let here = this_host();
        let gone: Vec<i64> = running
            .into_iter()
            .filter(|(_, host, pid, instance)| match (host, pid) {
                (Some(host), Some(pid)) => {
                    *host == here && !controller_alive(*pid, instance.as_deref())
                }
                _ => true,
            })
            .map(|(id, _, _, _)| id)
            .collect();
        if gone.is_empty() {
            return Ok(Interrupted::default());
        }
        let ids = serde_json::to_string(&gone).expect("ids serialize");
        let runs = format!("(SELECT value FROM json_each('{ids}'))");
        self.interrupt_where(now, &format!("run_id IN {runs}"))
            .await
    }

    /// Interrupts the running runs matching `runs_filter` (on `run_id`),
    /// their jobs and their steps.
    pub(crate) async fn interrupt_where(
        &self,
        now: DateTime<Utc>,
        runs_filter: &str,
    ) -> Result<Interrupted, CatalogError> {
        let at = stamp(now);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut done = Interrupted::default();
        let jobs = format!("(SELECT id FROM jobs WHERE {runs_filter})");
        for (table, count, filter) in [
            ("steps", &mut done.steps, format!("job_id IN {jobs}")),
            ("jobs", &mut done.jobs, runs_filter.to_string()),
            ("runs", &mut done.runs, runs_filter.replace("run_id", "id")),
        ] {
            let statuses = if table == "runs" {
                "('running')"
            } else {
                "('running', 'pending')"
            };
            let sql = format!(
                "UPDATE {table} SET status = 'interrupted', finished = COALESCE(finished, ?)
                 WHERE status IN {statuses} AND {filter}"
            );
            *count = sqlx::query(AssertSqlSafe(sql))
                .bind(&at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(done)
    }
}

/// A running run and its controller: id, host, pid, instance.
type Controlled = (i64, Option<String>, Option<i64>, Option<String>);

/// This machine's name, as runs record their controller.
pub(crate) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// Whether a process of this machine still exists: `/proc/PID` is there.
fn process_alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the controller that recorded `pid` (and, since schema 4, its
/// instance) is still that same process.
pub(crate) fn controller_alive(pid: i64, instance: Option<&str>) -> bool {
    match instance {
        Some(recorded) if !recorded.is_empty() => instance_of(pid).as_deref() == Some(recorded),
        _ => process_alive(pid),
    }
}

/// A process as no other: boot id, pid and start time (field 22 of
/// `/proc/PID/stat`, counted after the command name, which may hold
/// spaces and parentheses).
pub(crate) fn instance_of(pid: i64) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let started = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(format!("{}/{pid}/{started}", boot.trim()))
}

#[cfg(test)]
mod instance_tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_its_start_and_a_reused_pid_is_not_it() {
        let me = i64::from(std::process::id());
        let instance = instance_of(me).expect("this process has an instance");
        assert!(controller_alive(me, Some(&instance)));
        // The same pid, started at another time: a different process.
        let (head, _) = instance.rsplit_once('/').expect("three parts");
        assert!(!controller_alive(me, Some(&format!("{head}/1"))));
        // Rows from before schema 4 have only the pid.
        assert!(controller_alive(me, None));
        assert!(!controller_alive(999_999_999, None));
    }
}
