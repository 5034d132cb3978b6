//! A run of a playbook over its hosts: batch after batch as `serial` says,
//! at most `forks` hosts at once, halting when failures pass
//! `max_failures`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use nightshift_catalog::{Catalog, JobStatus, NewRun, RunId, RunStatus, Trigger};
use nightshift_plan::Playbook;
use nightshift_store::{Passphrase, RetentionPolicy};
use nightshift_transport::SshConfig;
use tokio::sync::{Semaphore, mpsc};

use crate::batch::batches;
use crate::event::{Event, JobReport, RunReport};
use crate::reach::Reach;

/// A host of the run and what the engine needs to know of it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub reach: Reach,
    /// The address recorded in the catalog.
    pub address: Option<String>,
    /// Its retention policy from the inventory, for `forget = true`.
    pub retention: Option<RetentionPolicy>,
}

/// Where backups go.
#[derive(Clone)]
pub struct StoreAccess {
    pub root: PathBuf,
    pub passphrase: Option<Passphrase>,
}

impl std::fmt::Debug for StoreAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAccess")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Everything a run needs, decided before it starts.
#[derive(Debug)]
pub struct Rollout {
    pub playbook: Playbook,
    pub targets: Vec<Target>,
    /// Report what would happen and change nothing.
    pub check: bool,
    pub forks: usize,
    pub ssh: SshConfig,
    pub catalog: Option<Catalog>,
    pub store: Option<StoreAccess>,
    pub trigger: Trigger,
    pub operator: Option<String>,
    pub window: Option<String>,
}

/// What every job of a run shares.
#[derive(Debug)]
pub struct Env {
    pub playbook: Playbook,
    pub check: bool,
    pub ssh: SshConfig,
    pub catalog: Option<Catalog>,
    pub store: Option<StoreAccess>,
    pub run: Option<RunId>,
    /// Backups take turns at the store. Two backups running side by side
    /// cannot see each other's new chunks, so the same file on five hosts
    /// would be stored five times; one at a time, it is stored once. Each
    /// backup already uses every core for chunking and compression, so
    /// little is lost, and hosts' other steps still run in parallel.
    pub store_turn: tokio::sync::Mutex<()>,
    events: mpsc::UnboundedSender<Event>,
}

impl Env {
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Records `what` with `write`, if there is a catalog. A catalog that
    /// fails to record does not stop maintenance: the failure is logged,
    /// and the result is `None` as without a catalog.
    pub async fn record<'a, T, F, Fut>(&'a self, what: &str, write: F) -> Option<T>
    where
        F: FnOnce(&'a Catalog) -> Fut,
        Fut: Future<Output = Result<T, nightshift_catalog::CatalogError>>,
    {
        match write(self.catalog.as_ref()?).await {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::warn!(%err, "cannot record {what} in the catalog");
                None
            }
        }
    }
}

/// Set once the rollout halts: jobs in flight stop after their step.
#[derive(Debug, Default)]
pub struct Halt(Mutex<Option<String>>);

impl Halt {
    pub fn is_set(&self) -> bool {
        self.0.lock().is_ok_and(|r| r.is_some())
    }

    pub fn reason(&self) -> String {
        self.0
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_default()
    }

    fn set(&self, reason: String) -> bool {
        match self.0.lock() {
            Ok(mut slot) if slot.is_none() => {
                *slot = Some(reason);
                true
            }
            _ => false,
        }
    }
}

/// How many failed hosts a run tolerates: `max_failures` of all targets.
/// `None` when unset: then only a batch that failed on every host halts
/// the run, as in Ansible.
fn tolerated(playbook: &Playbook, hosts: usize) -> Option<usize> {
    playbook.max_failures.map(|t| match t {
        nightshift_plan::Threshold::Count(n) => n,
        nightshift_plan::Threshold::Percent(p) => ((hosts as f64) * p / 100.0).floor() as usize,
    })
}

/// Runs the rollout to its end, sending events as things happen.
pub async fn run(rollout: Rollout, events: mpsc::UnboundedSender<Event>) -> RunReport {
    let started = Instant::now();
    let Rollout {
        playbook,
        targets,
        check,
        forks,
        ssh,
        catalog,
        store,
        trigger,
        operator,
        window,
    } = rollout;
    let sizes = batches(targets.len(), playbook.serial.as_ref());
    let limit = tolerated(&playbook, targets.len());
    let name = playbook.name.get_ref().clone();
    // Check mode records nothing: it changes nothing.
    let catalog = catalog.filter(|_| !check);
    let run = begin_run(
        catalog.as_ref(),
        &name,
        trigger,
        operator.as_deref(),
        window.as_deref(),
    )
    .await;
    let env = Arc::new(Env {
        playbook,
        check,
        ssh,
        catalog,
        store,
        run,
        store_turn: tokio::sync::Mutex::new(()),
        events,
    });
    env.emit(Event::RunStarted {
        run: run.map(|r| r.0),
        playbook: name.clone(),
        hosts: targets.len(),
        batches: sizes.clone(),
        max_failures: limit.unwrap_or(usize::MAX),
        check,
    });
    let rollout = Running {
        env: env.clone(),
        halt: Arc::new(Halt::default()),
        reports: Arc::new(Mutex::new(Vec::new())),
        slots: Arc::new(Semaphore::new(forks.max(1))),
        limit,
    };
    let mut rest = targets.into_iter();
    let mut skipped = 0;
    for (number, size) in sizes.iter().enumerate() {
        let batch: Vec<Target> = rest.by_ref().take(*size).collect();
        if rollout.halt.is_set() {
            skipped += batch.len();
            for target in &batch {
                record_skipped(&env, target, number + 1).await;
            }
            continue;
        }
        env.emit(Event::BatchStarted {
            batch: number + 1,
            of: sizes.len(),
            hosts: batch.iter().map(|t| t.name.clone()).collect(),
        });
        skipped += rollout
            .batch(batch, number + 1, number + 1 == sizes.len())
            .await;
    }
    let reports = rollout
        .reports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let halted_because = rollout.halt.is_set().then(|| rollout.halt.reason());
    finish(&env, run, name, reports, halted_because, skipped, started).await
}

async fn begin_run(
    catalog: Option<&Catalog>,
    playbook: &str,
    trigger: Trigger,
    operator: Option<&str>,
    window: Option<&str>,
) -> Option<RunId> {
    let new = NewRun {
        playbook,
        trigger,
        operator,
        window,
        started: Utc::now(),
    };
    match catalog?.begin_run(&new).await {
        Ok(id) => Some(id),
        Err(err) => {
            tracing::warn!(%err, "cannot record the run in the catalog");
            None
        }
    }
}

/// A rollout under way: what its batches share.
struct Running {
    env: Arc<Env>,
    halt: Arc<Halt>,
    reports: Arc<Mutex<Vec<JobReport>>>,
    slots: Arc<Semaphore>,
    limit: Option<usize>,
}

impl Running {
    /// Runs one batch, at most `forks` hosts at once; returns how many of
    /// its hosts never started because the run halted.
    async fn batch(&self, batch: Vec<Target>, number: usize, last: bool) -> usize {
        let size = batch.len();
        let mut tasks = tokio::task::JoinSet::new();
        for target in batch {
            let (env, halt, reports, slots, limit) = (
                self.env.clone(),
                self.halt.clone(),
                self.reports.clone(),
                self.slots.clone(),
                self.limit,
            );
            tasks.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                if halt.is_set() {
                    record_skipped(&env, &target, number).await;
                    return;
                }
                let report = crate::job::run(&env, &target, number, &halt).await;
                env.emit(Event::HostFinished(report.clone()));
                let mut all = reports.lock().unwrap_or_else(|e| e.into_inner());
                let failed = report.failed();
                all.push(report);
                if failed
                    && let Some(reason) = over_limit(&all, limit)
                    && halt.set(reason.clone())
                {
                    env.emit(Event::Halted { reason });
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let all = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let done: Vec<&JobReport> = all.iter().filter(|r| r.batch == number).collect();
        let wiped_out = !done.is_empty() && done.iter().all(|r| r.failed());
        if self.limit.is_none() && wiped_out && !last {
            let reason = format!("every host of batch {number} failed");
            if self.halt.set(reason.clone()) {
                self.env.emit(Event::Halted { reason });
            }
        }
        size - done.len()
    }
}

/// The halt reason once failures pass `limit`: "2 failures > max 1 (web07
/// unreachable, web08 verify_failed)".
fn over_limit(reports: &[JobReport], limit: Option<usize>) -> Option<String> {
    let limit = limit?;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| format!("{} {}", r.host, r.error_kind.as_deref().unwrap_or("failed")))
        .collect();
    (failed.len() > limit).then(|| {
        format!(
            "{} failures > max {limit} ({})",
            failed.len(),
            failed.join(", ")
        )
    })
}

/// A host the halted run never started: a job that says so.
async fn record_skipped(env: &Env, target: &Target, batch: usize) {
    let (Some(catalog), Some(run)) = (&env.catalog, env.run) else {
        return;
    };
    let now = Utc::now();
    let recorded = async {
        let job = catalog
            .begin_job(
                run,
                &target.name,
                target.address.as_deref(),
                batch as u32,
                now,
            )
            .await?;
        catalog
            .finish_job(job, JobStatus::Skipped, Some("halted"), now)
            .await
    };
    if let Err(err) = recorded.await {
        tracing::warn!(%err, "cannot record a skipped host in the catalog");
    }
}

async fn finish(
    env: &Env,
    run: Option<RunId>,
    playbook: String,
    reports: Vec<JobReport>,
    halted_because: Option<String>,
    skipped: usize,
    started: Instant,
) -> RunReport {
    let failed = reports.iter().filter(|r| r.failed()).count();
    let ok = reports.iter().filter(|r| r.status == JobStatus::Ok).count();
    let status = if halted_because.is_some() {
        RunStatus::Halted
    } else if failed > 0 || ok < reports.len() {
        RunStatus::Failed
    } else {
        RunStatus::Ok
    };
    if let (Some(catalog), Some(run)) = (&env.catalog, run)
        && let Err(err) = catalog
            .finish_run(run, status, halted_because.as_deref(), Utc::now())
            .await
    {
        tracing::warn!(%err, "cannot record the end of the run in the catalog");
    }
    let report = RunReport {
        run: run.map(|r| r.0),
        playbook,
        status,
        halted_because,
        hosts: reports.len() + skipped,
        ok,
        failed,
        skipped,
        elapsed: started.elapsed(),
    };
    env.emit(Event::RunFinished(report.clone()));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(host: &str, failed: bool) -> JobReport {
        JobReport {
            host: host.into(),
            batch: 1,
            status: if failed {
                JobStatus::Failed
            } else {
                JobStatus::Ok
            },
            error_kind: failed.then(|| "unreachable".to_string()),
            error: None,
            steps: Vec::new(),
            updated: Vec::new(),
            reboot: None,
            backup: None,
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn the_limit_is_crossed_only_past_it() {
        let reports = [job("web01", false), job("web07", true)];
        assert_eq!(over_limit(&reports, Some(1)), None);
        assert_eq!(over_limit(&reports, None), None);
        let reports = [job("web07", true), job("web08", true)];
        assert_eq!(
            over_limit(&reports, Some(1)).as_deref(),
            Some("2 failures > max 1 (web07 unreachable, web08 unreachable)")
        );
    }
}
