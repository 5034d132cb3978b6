//! One host's job in a run: connect once, run the steps in order, stop at
//! the first failure that is not allowed to continue, and record it all.

use std::time::{Duration, Instant};

use chrono::Utc;
use nightshift_catalog::{JobId, JobStatus, StepEnd, StepStatus};
use nightshift_plan::Step;
use nightshift_transport::{ExitStatus, Host};

use crate::event::{Event, JobReport, StepReport};
use crate::reach::connect;
use crate::rollout::{Env, Halt, Target};
use crate::step::{self, Done};
use crate::stop::Stop;

/// A host while its job runs: the connection, and what earlier steps did.
pub struct HostRun<'a> {
    pub target: &'a Target,
    pub env: &'a Env,
    /// `None` after the connection was lost (or during a reboot).
    pub conn: Option<Host>,
    pub job: Option<JobId>,
    /// The name of the step running now, for progress events.
    pub step: String,
    /// Report and change nothing: `--check`, or the step's own `check`.
    pub check: bool,
    /// The run's stop, and this host's own window.
    pub stop: Stop,
}

impl std::fmt::Debug for HostRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRun")
            .field("host", &self.target.name)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl HostRun<'_> {
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// Tells whoever watches what the step is doing.
    pub fn progress(&self, text: impl Into<String>) {
        self.env.emit(Event::Progress {
            host: self.target.name.clone(),
            step: self.step.clone(),
            text: text.into(),
        });
    }

    /// The live connection, or the error a step reports without one.
    pub fn conn(&self) -> Result<&Host, step::StepError> {
        self.conn.as_ref().ok_or_else(|| {
            step::StepError::new(
                "connection_lost",
                format!("the connection to {} is gone", self.target.name),
            )
        })
    }
}

/// Runs the playbook's steps on one host.
pub async fn run(env: &Env, target: &Target, batch: usize, halt: &Halt, stop: Stop) -> JobReport {
    let started = Instant::now();
    let job = match env.run {
        Some(run) => {
            env.record("a job", |c| {
                c.begin_job(
                    run,
                    &target.name,
                    target.address.as_deref(),
                    batch as u32,
                    Utc::now(),
                )
            })
            .await
        }
        None => None,
    };
    let mut report = JobReport::new(&target.name, batch, JobStatus::Running);
    let conn = match connect(&target.reach, &env.ssh).await {
        Ok(conn) => Some(conn),
        Err(err) => {
            report.status = JobStatus::Failed;
            report.error_kind = Some(err.kind().to_string());
            report.error = Some(err.to_string());
            None
        }
    };
    let mut host = HostRun {
        target,
        env,
        conn,
        job,
        step: String::new(),
        check: env.check,
        stop,
    };
    if host.conn.is_some() {
        run_steps(&mut host, &mut report, halt, started).await;
    }
    if let Some(conn) = host.conn.take() {
        conn.close().await;
    }
    if report.status == JobStatus::Running {
        report.status = JobStatus::Ok;
    }
    report.elapsed = started.elapsed();
    let (status, kind, detail) = (
        report.status,
        report.error_kind.clone(),
        report.error.clone(),
    );
    if let Some(job) = job {
        env.record("the end of a job", |c| {
            c.finish_job_saying(job, status, kind.as_deref(), detail.as_deref(), Utc::now())
        })
        .await;
    }
    report
}

async fn run_steps(host: &mut HostRun<'_>, report: &mut JobReport, halt: &Halt, started: Instant) {
    let env = host.env;
    let deadline = env.playbook.timeout.map(|t| started + t.0);
    for (position, step) in env.playbook.steps.iter().enumerate() {
        let name = step.name.clone();
        host.step = name.clone();
        host.check = env.check || step.check;
        let skip = if report.status != JobStatus::Running {
            Some("an earlier step failed")
        } else if halt.is_set() {
            report.status = JobStatus::Interrupted;
            report.error_kind = Some("halted".into());
            report.error = Some(format!("the run halted: {}", halt.reason()));
            Some("the run halted")
        } else if let Some((kind, reason)) = host.stop.draining() {
            report.status = JobStatus::Interrupted;
            report.error_kind = Some(kind.as_str().into());
            report.error = Some(reason);
            Some("the run is being stopped")
        } else if !condition_holds(step, &report.steps) {
            Some("its `when` does not hold")
        } else {
            None
        };
        if let Some(why) = skip {
            skipped(host, report, step, position, why).await;
            continue;
        }
        let limit = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    report.status = JobStatus::Failed;
                    report.error_kind = Some("timeout".into());
                    report.error = Some(format!(
                        "the host's time limit of {}s ran out before `{name}`",
                        env.playbook.timeout.map_or(0, |t| t.0.as_secs())
                    ));
                    skipped(host, report, step, position, "the host's time ran out").await;
                    continue;
                }
                Some(step.timeout.map_or(left, |t| t.0.min(left)))
            }
            None => step.timeout.map(|t| t.0),
        };
        run_one(host, report, step, position, limit).await;
    }
}

fn condition_holds(step: &Step, past: &[StepReport]) -> bool {
    step.when.as_ref().is_none_or(|c| step::allowed(c, past))
}

async fn run_one(
    host: &mut HostRun<'_>,
    report: &mut JobReport,
    step: &Step,
    position: usize,
    limit: Option<Duration>,
) {
    let env = host.env;
    let name = step.name.clone();
    let kind = step::kind_of(step);
    // Recorded before it is announced: what anyone saw start is in the
    // catalog, even if the controller dies the next moment.
    let step_id = begin_step(host, position, &name, kind).await;
    env.emit(Event::StepStarted {
        host: host.target.name.clone(),
        step: name.clone(),
        kind,
    });
    let started = Instant::now();
    let (done, attempts) = step::attempt(host, step, limit).await;
    let cut_short = done.failed && host.stop.is_cancelled();
    let status = if cut_short {
        StepStatus::Interrupted
    } else if done.failed {
        StepStatus::Failed
    } else if done.skipped {
        StepStatus::Skipped
    } else {
        StepStatus::Ok
    };
    finish_step(host, step_id, status, &done, attempts).await;
    let step_report = step::report(step, status, &done, attempts, started.elapsed());
    absorb(report, step, &done, &step_report);
    if cut_short && let Some((kind, reason)) = host.stop.draining() {
        report.status = JobStatus::Interrupted;
        report.error_kind = Some(kind.as_str().into());
        report.error = Some(format!("{name} was cancelled: {reason}"));
    }
    env.emit(Event::StepFinished {
        host: host.target.name.clone(),
        step: step_report.clone(),
    });
    report.steps.push(step_report);
}

/// Takes what a finished step found into the job.
fn absorb(report: &mut JobReport, step: &Step, done: &Done, r: &StepReport) {
    report.updated.extend(done.updated.iter().cloned());
    report
        .would_update
        .extend(done.would_update.iter().cloned());
    if done.rebooted.is_some() {
        report.reboot = done.rebooted;
    }
    if done.backup.is_some() {
        report.backup.clone_from(&done.backup);
    }
    let lost = done.error.as_ref().is_some_and(step::StepError::lost_host);
    if done.failed && (!step.continue_on_error || lost) {
        report.status = JobStatus::Failed;
        report.error_kind = r.error_kind.clone();
        report.error = Some(format!("{}: {}", r.step, done.summary));
    }
}

async fn skipped(
    host: &mut HostRun<'_>,
    report: &mut JobReport,
    step: &Step,
    position: usize,
    why: &str,
) {
    let name = step.name.clone();
    let kind = step::kind_of(step);
    let done = Done::ok(format!("skipped: {why}"));
    let id = begin_step(host, position, &name, kind).await;
    finish_step(host, id, StepStatus::Skipped, &done, 0).await;
    let r = step::report(step, StepStatus::Skipped, &done, 0, Duration::ZERO);
    host.env.emit(Event::StepFinished {
        host: host.target.name.clone(),
        step: r.clone(),
    });
    report.steps.push(r);
}

async fn begin_step(
    host: &HostRun<'_>,
    position: usize,
    name: &str,
    kind: nightshift_catalog::StepKind,
) -> Option<nightshift_catalog::StepId> {
    let job = host.job?;
    host.env
        .record("a step", |c| {
            c.begin_step(job, position as u32, name, kind, Utc::now())
        })
        .await
}

async fn finish_step(
    host: &HostRun<'_>,
    id: Option<nightshift_catalog::StepId>,
    status: StepStatus,
    done: &Done,
    attempts: u32,
) {
    let Some(id) = id else { return };
    let (exit_code, signal) = match &done.exit {
        Some(ExitStatus::Code(code)) => (Some(*code), None),
        Some(ExitStatus::Signal(name)) => (None, Some(name.as_str())),
        None => (None, None),
    };
    let end = StepEnd {
        status,
        exit_code,
        signal,
        attempts,
        changed: done.changed,
        output: &done.output,
        finished: Utc::now(),
    };
    host.env
        .record("the end of a step", |c| c.finish_step(id, &end))
        .await;
}
