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
    events: mpsc::UnboundedSender<Event>,
}

impl Env {
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Does `write` with the catalog, if there is one. A catalog that
    /// fails to record does not stop maintenance: the failure is logged.
    pub async fn record<'a, T, F, Fut>(&'a self, write: F) -> Option<T>
    where
        F: FnOnce(&'a Catalog) -> Fut,
        Fut: Future<Output = T>,
    {
        match &self.catalog {
            Some(catalog) => Some(write(catalog).await),
            None => None,
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

/// How many failed hosts a run tolerates: `max_failures` of all targets,
/// or, when unset, all but one of each batch (so only a batch that failed
/// on every host halts, as in Ansible).
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
    let run = match (&catalog, check) {
        (Some(catalog), false) => {
            let new = NewRun {
                playbook: &name,
                trigger,
                operator: operator.as_deref(),
                window: window.as_deref(),
                started: Utc::now(),
            };
            match catalog.begin_run(&new).await {
                Ok(id) => Some(id),
                Err(err) => {
                    tracing::warn!(%err, "cannot record the run in the catalog");
                    None
                }
            }
        }
        _ => None,
    };
    let env = Arc::new(Env {
        playbook,
        check,
        ssh,
        // Check mode records nothing: it changes nothing.
        catalog: if check { None } else { catalog },
        store,
        run,
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
    let halt = Arc::new(Halt::default());
    let reports = Arc::new(Mutex::new(Vec::<JobReport>::new()));
    let slots = Arc::new(Semaphore::new(forks.max(1)));
    let mut rest = targets.into_iter();
    let mut skipped = 0;
    for (number, size) in sizes.iter().enumerate() {
        let batch: Vec<Target> = rest.by_ref().take(*size).collect();
        if halt.is_set() {
            skipped += batch.len();
            continue;
        }
        env.emit(Event::BatchStarted {
            batch: number + 1,
            of: sizes.len(),
            hosts: batch.iter().map(|t| t.name.clone()).collect(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for target in batch {
            let (env, halt, reports, slots) =
                (env.clone(), halt.clone(), reports.clone(), slots.clone());
            tasks.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                if halt.is_set() {
                    return;
                }
                let report = crate::job::run(&env, &target, number + 1, &halt).await;
                let failed = report.failed();
                env.emit(Event::HostFinished(report.clone()));
                let mut all = reports.lock().unwrap_or_else(|e| e.into_inner());
                all.push(report);
                let failures = all.iter().filter(|r| r.failed()).count();
                let over = limit.is_some_and(|limit| failures > limit);
                if failed && over {
                    let names: Vec<String> = all
                        .iter()
                        .filter(|r| r.failed())
                        .map(|r| format!("{} {}", r.host, r.error_kind.as_deref().unwrap_or("failed")))
                        .collect();
                    let reason = format!(
                        "{failures} failures > max {} ({})",
                        limit.unwrap_or(0),
                        names.join(", ")
                    );
                    if halt.set(reason.clone()) {
                        env.emit(Event::Halted { reason });
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let all = reports.lock().unwrap_or_else(|e| e.into_inner());
        let in_batch: Vec<&JobReport> = all.iter().filter(|r| r.batch == number + 1).collect();
        if limit.is_none() && !in_batch.is_empty() && in_batch.iter().all(|r| r.failed()) && number + 1 < sizes.len() {
            let reason = format!("every host of batch {} failed", number + 1);
            if halt.set(reason.clone()) {
                env.emit(Event::Halted { reason });
            }
        }
        skipped += size - in_batch.len();
    }
    let reports = reports.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let failed = reports.iter().filter(|r| r.failed()).count();
    let ok = reports.iter().filter(|r| r.status == JobStatus::Ok).count();
    let halted_because = halt.is_set().then(|| halt.reason());
    let status = if halted_because.is_some() {
        RunStatus::Halted
    } else if failed > 0 || ok < reports.len() {
        RunStatus::Failed
    } else {
        RunStatus::Ok
    };
    if let (Some(catalog), Some(run)) = (&env.catalog, run) {
        if let Err(err) = catalog
            .finish_run(run, status, halted_because.as_deref(), Utc::now())
            .await
        {
            tracing::warn!(%err, "cannot record the end of the run in the catalog");
        }
    }
    let report = RunReport {
        run: run.map(|r| r.0),
        playbook: name,
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
