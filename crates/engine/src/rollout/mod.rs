//! A run of a playbook over its hosts: batch after batch as `serial` says,
//! at most `forks` hosts at once, halting when failures pass
//! `max_failures`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use nightshift_catalog::{Catalog, JobStatus, Lease, NewRun, RunId, RunStatus};
use nightshift_plan::Playbook;
use nightshift_scheduler::Clock;
use nightshift_transport::SshConfig;
use tokio::sync::{Semaphore, mpsc};

use crate::batch::batches;
use crate::event::{Event, JobReport, RunReport};
use crate::launch::Origin;
use crate::stop::{Closing, Stop};

mod env;

pub use env::{Env, Halt, StoreAccess, Target};

/// Everything a run needs, decided before it starts: made by
/// [`crate::launch::Launch::build`].
#[derive(Debug)]
pub struct Rollout {
    pub(crate) playbook: Playbook,
    pub(crate) targets: Vec<Target>,
    /// Report what would happen and change nothing.
    pub(crate) check: bool,
    pub(crate) forks: usize,
    pub(crate) ssh: SshConfig,
    pub(crate) catalog: Option<Catalog>,
    pub(crate) store: Option<StoreAccess>,
    pub(crate) origin: Origin,
    pub(crate) window: Option<String>,
    /// How the daemon stops the run from outside.
    pub(crate) stop: Stop,
    /// Read for host windows; the daemon's clock.
    pub(crate) clock: Arc<dyn Clock>,
    /// A bound on hosts at once shared with other runs (the daemon's
    /// `max_hosts`), on top of this run's `forks`.
    pub(crate) fleet_slots: Option<Arc<Semaphore>>,
    /// When the run's window closes, if it has one.
    pub(crate) closing: Option<Closing>,
    /// How long a host's steps may go on after its own window closed.
    pub(crate) grace: std::time::Duration,
    /// Hosts a closing window or a stop leaves unstarted stay deferred (a
    /// run for hosts that were deferred), rather than skipped.
    pub(crate) undone_waits: bool,
}

impl Rollout {
    /// Drains or cancels the run from outside.
    pub fn stop(&self) -> Stop {
        self.stop.clone()
    }

    /// A schedule's run tied to its fire, once the fire is recorded: the
    /// run's row then names it.
    pub fn answering(mut self, fire: i64) -> Self {
        if let Origin::Schedule { fire: slot, .. } = &mut self.origin {
            *slot = Some(fire);
        }
        self
    }

    /// Its hosts' names, in the order they run.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.name.as_str())
    }
}

/// How many failed hosts a run tolerates: `max_failures` of all targets.
/// `None` when unset: then only a batch that failed on every host halts
/// the run, as in Ansible.
fn tolerated(playbook: &Playbook, hosts: usize) -> Option<usize> {
    playbook.max_failures.map(|t| t.limit(hosts))
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
        origin,
        window,
        stop,
        clock,
        fleet_slots,
        closing,
        grace,
        undone_waits,
    } = rollout;
    let sizes = batches(targets.len(), playbook.serial.as_ref());
    let limit = tolerated(&playbook, targets.len());
    let name = playbook.name.clone();
    // Check mode records nothing: it changes nothing.
    let catalog = catalog.filter(|_| !check);
    let run = begin_run(catalog.as_ref(), &name, &origin, window.as_deref()).await;
    let env = Arc::new(Env {
        playbook,
        check,
        ssh,
        catalog,
        store,
        run,
        store_turn: tokio::sync::Mutex::new(()),
        stop,
        undone_waits,
        events,
    });
    let keeper = closing.map(|c| tokio::spawn(c.keep(env.stop.clone(), clock.clone())));
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
        fleet_slots,
        clock,
        grace,
        limit,
    };
    if env.catalog.is_some() && run.is_none() {
        // Without a record there is no lease, and no trace of what was
        // done: nothing starts.
        let reason =
            "the run could not be recorded in the catalog, so no host was started (see the log)"
                .to_string();
        let skipped = targets.len();
        let report = finish(&env, run, name, Vec::new(), Some(reason), skipped, started).await;
        if let Some(keeper) = keeper {
            keeper.abort();
        }
        return report;
    }
    let mut rest = targets.into_iter();
    let mut skipped = 0;
    for (number, size) in sizes.iter().enumerate() {
        let batch: Vec<Target> = rest.by_ref().take(*size).collect();
        if let Some(why) = rollout.not_starting() {
            skipped += batch.len();
            for target in &batch {
                record_skipped(&env, target, number + 1, &why).await;
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
    if let Some(keeper) = keeper {
        keeper.abort();
    }
    finish(&env, run, name, reports, halted_because, skipped, started).await
}

/// The run's row, written once with what it was started for.
async fn begin_run(
    catalog: Option<&Catalog>,
    playbook: &str,
    origin: &Origin,
    window: Option<&str>,
) -> Option<RunId> {
    let label = origin.label();
    let new = NewRun {
        playbook,
        trigger: origin.trigger(),
        operator: origin.operator(),
        window,
        started: Utc::now(),
        cause: origin.cause(label.as_deref()),
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
#[derive(Clone)]
struct Running {
    env: Arc<Env>,
    halt: Arc<Halt>,
    reports: Arc<Mutex<Vec<JobReport>>>,
    slots: Arc<Semaphore>,
    fleet_slots: Option<Arc<Semaphore>>,
    clock: Arc<dyn Clock>,
    grace: std::time::Duration,
    limit: Option<usize>,
}

/// Why a host is not started: the catalog's `error_kind` and, in words,
/// its `detail`.
#[derive(Debug, Clone)]
struct NotStarted {
    kind: &'static str,
    detail: Option<String>,
}

impl Running {
    /// Why nothing more starts, if so: the run halted, or is being
    /// stopped from outside.
    fn not_starting(&self) -> Option<NotStarted> {
        if self.halt.is_set() {
            return Some(NotStarted {
                kind: "halted",
                detail: Some(format!("the run halted: {}", self.halt.reason())),
            });
        }
        self.env.stop.draining().map(|(kind, reason)| NotStarted {
            kind: kind.as_str(),
            detail: Some(reason),
        })
    }

    /// Runs one batch, at most `forks` hosts at once; returns how many of
    /// its hosts never started because the run halted or was stopped.
    async fn batch(&self, batch: Vec<Target>, number: usize, last: bool) -> usize {
        let size = batch.len();
        let mut tasks = tokio::task::JoinSet::new();
        for target in batch {
            let running = self.clone();
            tasks.spawn(async move { running.host(target, number).await });
        }
        while tasks.join_next().await.is_some() {}
        let all = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let done: Vec<&JobReport> = all.iter().filter(|r| r.batch == number).collect();
        let worked: Vec<&&JobReport> = done
            .iter()
            .filter(|r| r.status != JobStatus::Deferred)
            .collect();
        let wiped_out = !worked.is_empty() && worked.iter().all(|r| r.failed());
        if self.limit.is_none() && wiped_out && !last {
            let reason = format!("every host of batch {number} failed");
            if self.halt.set(reason.clone()) {
                self.env.emit(Event::Halted { reason });
            }
        }
        size - done.len()
    }

    /// One host of a batch, once a slot is free: started, deferred to its
    /// window, or not started at all.
    async fn host(&self, target: Target, number: usize) {
        let env = &self.env;
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let _fleet_slot = match &self.fleet_slots {
            Some(slots) => match slots.clone().acquire_owned().await {
                Ok(slot) => Some(slot),
                Err(_) => return,
            },
            None => None,
        };
        if let Some(why) = self.not_starting() {
            record_skipped(env, &target, number, &why).await;
            return;
        }
        let report = match self.closed_window(&target) {
            Some(detail) => deferred(env, &target, number, detail).await,
            None => match lease(env, &target, number).await {
                Err(report) => report,
                Ok(()) => {
                    let stop = env.stop.child();
                    let keeper = self
                        .host_closing(&target)
                        .map(|c| tokio::spawn(c.keep(stop.clone(), self.clock.clone())));
                    let report = crate::job::run(env, &target, number, &self.halt, stop).await;
                    if let Some(keeper) = keeper {
                        keeper.abort();
                    }
                    release(env, &target).await;
                    report
                }
            },
        };
        env.emit(Event::HostFinished(report.clone()));
        let mut all = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let failed = report.failed();
        all.push(report);
        if failed
            && let Some(reason) = over_limit(&all, self.limit)
            && self.halt.set(reason.clone())
        {
            env.emit(Event::Halted { reason });
        }
    }

    /// When the host's own window, open now, closes on its job.
    fn host_closing(&self, target: &Target) -> Option<Closing> {
        let window = target.window.as_ref()?;
        let opening = window.rule.next_opening(&self.clock.now())?;
        Some(Closing {
            reason: format!(
                "the window {} of {} closed at {}",
                window.name,
                target.name,
                opening.close.format("%Y-%m-%d %H:%M %Z")
            ),
            closes: opening.close.to_utc(),
            grace: self.grace,
        })
    }

    /// Why the host's own window keeps it out now, if it does.
    fn closed_window(&self, target: &Target) -> Option<String> {
        let window = target.window.as_ref()?;
        let now = self.clock.now();
        if window.rule.is_open(&now) {
            return None;
        }
        let opens = window
            .rule
            .next_opening(&now)
            .map(|o| format!("; it opens next at {}", o.open.format("%Y-%m-%d %H:%M %Z")))
            .unwrap_or_default();
        Some(format!("outside window {}{opens}", window.name))
    }
}

/// A job that says the host waits for its own window.
async fn deferred(env: &Env, target: &Target, batch: usize, detail: String) -> JobReport {
    kept_out(
        env,
        target,
        batch,
        JobStatus::Deferred,
        "outside_window",
        detail,
    )
    .await
}

/// Records and reports a job that ended before it began.
async fn kept_out(
    env: &Env,
    target: &Target,
    batch: usize,
    status: JobStatus,
    kind: &'static str,
    detail: String,
) -> JobReport {
    let why = NotStarted {
        kind,
        detail: Some(detail.clone()),
    };
    record_ended(env, target, batch, status, &why).await;
    let mut report = JobReport::new(&target.name, batch, status);
    report.error_kind = Some(kind.into());
    report.error = Some(detail);
    report
}

/// Takes the host's lease for this playbook; another live run holding it
/// keeps the host out, with a job that says so.
async fn lease(env: &Env, target: &Target, batch: usize) -> Result<(), JobReport> {
    let (Some(catalog), Some(run)) = (&env.catalog, env.run) else {
        return Ok(());
    };
    let playbook = &env.playbook.name;
    let held = match catalog
        .take_lease(&target.name, playbook, run, Utc::now())
        .await
    {
        Ok(Lease::Taken) => return Ok(()),
        Ok(Lease::Held { run, since }) => {
            format!(
                "{playbook} is already running on {} in run {run} (since {since})",
                target.name
            )
        }
        Err(err) => {
            let why = format!(
                "cannot take the lease of {} for {playbook} ({err}); the host is left alone",
                target.name
            );
            return Err(kept_out(
                env,
                target,
                batch,
                JobStatus::Skipped,
                "lease_unavailable",
                why,
            )
            .await);
        }
    };
    Err(kept_out(env, target, batch, JobStatus::Skipped, "leased", held).await)
}

async fn release(env: &Env, target: &Target) {
    if let (Some(run), Some(_)) = (env.run, &env.catalog) {
        let playbook = &env.playbook.name;
        env.record("the end of a host lease", |c| {
            c.release_lease(&target.name, playbook, run)
        })
        .await;
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

/// A host the run never started: a job that says why.
async fn record_skipped(env: &Env, target: &Target, batch: usize, why: &NotStarted) {
    let waits = env.undone_waits && matches!(why.kind, "window_closed" | "stopped");
    let status = if waits {
        JobStatus::Deferred
    } else {
        JobStatus::Skipped
    };
    record_ended(env, target, batch, status, why).await;
}

/// Records a job that ended before it began.
async fn record_ended(
    env: &Env,
    target: &Target,
    batch: usize,
    status: JobStatus,
    why: &NotStarted,
) {
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
            .finish_job_saying(job, status, Some(why.kind), why.detail.as_deref(), now)
            .await
    };
    if let Err(err) = recorded.await {
        tracing::warn!(%err, "cannot record a host that was not started in the catalog");
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
    let deferred = reports
        .iter()
        .filter(|r| r.status == JobStatus::Deferred)
        .count();
    let cut_short = reports
        .iter()
        .filter(|r| r.status == JobStatus::Interrupted)
        .count();
    let stopped = env
        .stop
        .draining()
        .filter(|_| halted_because.is_none() && (skipped > 0 || cut_short > 0))
        .map(|(_, reason)| format!("{reason}: {skipped} hosts not started, {cut_short} cut short"));
    let (status, halted_because) = if halted_because.is_some() {
        (RunStatus::Halted, halted_because)
    } else if stopped.is_some() {
        (RunStatus::Interrupted, stopped)
    } else if failed > 0 || ok + deferred < reports.len() {
        (RunStatus::Failed, None)
    } else {
        (RunStatus::Ok, None)
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
        deferred,
        elapsed: started.elapsed(),
    };
    env.emit(Event::RunFinished(report.clone()));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(host: &str, failed: bool) -> JobReport {
        let status = if failed {
            JobStatus::Failed
        } else {
            JobStatus::Ok
        };
        let mut report = JobReport::new(host, 1, status);
        report.error_kind = failed.then(|| "unreachable".to_string());
        report
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
