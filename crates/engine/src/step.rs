//! One step on one host: whether it runs (`when`), its attempts with their
//! delay, its time limit, and what it leaves for later steps to ask about.

use std::time::{Duration, Instant};

use nightshift_catalog::{StepKind, StepStatus};
use nightshift_plan::{Action, Condition, Outcome, Step};
use nightshift_transport::{ExitStatus, TransportError};

use crate::action;
use crate::event::{BackupReport, PackageChange, StepReport};
use crate::job::HostRun;

/// What an action reports back.
#[derive(Debug, Default)]
pub struct Done {
    pub failed: bool,
    /// Nothing was done: check mode, or nothing to do that counts as a run.
    pub skipped: bool,
    pub changed: bool,
    pub exit: Option<ExitStatus>,
    /// Everything the step printed, and what the engine says about it.
    pub output: Vec<u8>,
    pub summary: String,
    /// What the summary counts, in full (see [`StepReport::listed`]).
    pub listed: Vec<String>,
    /// Set when the step failed for a reason other than its own exit code.
    pub error: Option<StepError>,
    pub reboot_required: bool,
    pub updated: Vec<PackageChange>,
    /// What a check would have upgraded; nothing was.
    pub would_update: Vec<PackageChange>,
    pub backup: Option<BackupReport>,
    pub rebooted: Option<Duration>,
    /// Whether trying again could help (a command's exit, not a refusal).
    pub retryable: bool,
}

/// Why a step failed, typed for the catalog's `error_kind`.
#[derive(Debug, Clone)]
pub struct StepError {
    pub kind: &'static str,
    pub message: String,
}

impl StepError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether the connection to the host is gone: the job cannot go on.
    pub fn lost_host(&self) -> bool {
        matches!(self.kind, "unreachable" | "connection_lost")
    }

    /// Whether trying again could help: not for a wrong step, a wrong key
    /// or a refusal, which fail the same way every time.
    pub fn transient(&self) -> bool {
        !matches!(
            self.kind,
            "invalid"
                | "auth_failed"
                | "host_key_unknown"
                | "host_key_changed"
                | "sudo_password"
                | "cancelled"
        )
    }
}

impl From<TransportError> for StepError {
    fn from(err: TransportError) -> Self {
        Self::new(err.kind(), err.to_string())
    }
}

impl Done {
    pub fn ok(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            ..Self::default()
        }
    }

    /// What check mode reports for a step it does not run.
    pub fn would(summary: impl Into<String>) -> Self {
        Self {
            skipped: true,
            summary: summary.into(),
            ..Self::default()
        }
    }

    pub fn fail(error: StepError) -> Self {
        Self {
            failed: true,
            summary: error.message.clone(),
            output: format!("{}\n", error.message).into_bytes(),
            retryable: error.transient(),
            error: Some(error),
            ..Self::default()
        }
    }

    /// Marks what was done so far as failed with `error`, keeping its
    /// output and findings.
    pub fn failing(&mut self, error: StepError) {
        self.failed = true;
        self.retryable = error.transient();
        self.summary = error.message.clone();
        self.error = Some(error);
    }

    pub fn say(&mut self, line: impl AsRef<str>) {
        self.output.extend_from_slice(line.as_ref().as_bytes());
        self.output.push(b'\n');
    }
}

/// Whether `when` lets the step run after the steps `past`, as the job's
/// report has them.
pub fn allowed(condition: &Condition, past: &[StepReport]) -> bool {
    let relevant: Vec<&StepReport> = past
        .iter()
        .filter(|p| condition.step.as_ref().is_none_or(|name| *name == p.step))
        .collect();
    let holds = match condition.outcome {
        Outcome::Changed => relevant.iter().any(|p| p.changed),
        Outcome::Failed => relevant.iter().any(|p| p.status == StepStatus::Failed),
        Outcome::Ok => relevant.iter().any(|p| p.status == StepStatus::Ok),
        Outcome::RebootRequired => relevant.iter().any(|p| p.reboot_required),
    };
    holds != condition.negated
}

pub fn kind_of(step: &Step) -> StepKind {
    match step.action {
        Action::Command(_) => StepKind::Command,
        Action::Update(_) => StepKind::Update,
        Action::Backup(_) => StepKind::Backup,
        Action::Verify(_) => StepKind::Verify,
        Action::Reboot(_) => StepKind::Reboot,
    }
}

const BACKSTOP: Duration = Duration::from_secs(10);

/// Runs the step's action with its attempts, each within `limit` (the
/// step's timeout, cut to what is left of the host's).
pub async fn attempt(host: &mut HostRun<'_>, step: &Step, limit: Option<Duration>) -> (Done, u32) {
    let attempts = step.retries + 1;
    let delay = step.delay.map_or(Duration::from_secs(5), |d| d.0);
    // One limit for all attempts together, as the step's (and host's)
    // timeout means.
    let deadline = limit.map(|limit| Instant::now() + limit);
    let mut log = Vec::new();
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        let mut done = once(
            host,
            step,
            deadline.map(|d| d.saturating_duration_since(started)),
        )
        .await;
        log.append(&mut done.output);
        let time_left = deadline.is_none_or(|d| d > Instant::now() + delay);
        let again = done.failed
            && attempt < attempts
            && done.retryable
            && time_left
            && !host.stop.is_cancelled()
            && !done.error.as_ref().is_some_and(StepError::lost_host);
        if !again {
            done.output = log;
            return (done, attempt);
        }
        log.extend_from_slice(
            format!(
                "attempt {attempt} of {attempts} failed after {:.1}s; trying again in {}s\n",
                started.elapsed().as_secs_f64(),
                delay.as_secs()
            )
            .as_bytes(),
        );
        let token = host.stop.token();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = token.cancelled() => {
                done.output = log;
                return (done, attempt);
            }
        }
        attempt += 1;
    }
}

/// One attempt within `limit`. The transport stops the remote command at
/// `limit` and says so precisely; the timeout here is the backstop for
/// what it cannot stop.
async fn once(host: &mut HostRun<'_>, step: &Step, limit: Option<Duration>) -> Done {
    let token = host.stop.token();
    // Commands stop themselves when the run is cancelled; this catches
    // what waits without a command (a reboot's wait for the host).
    let cancelled = async {
        token.cancelled().await;
        tokio::time::sleep(BACKSTOP).await;
    };
    let limit_or_max = limit.unwrap_or(Duration::MAX);
    let backstop = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit + BACKSTOP).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        done = action::run(host, step, limit_or_max) => done,
        () = cancelled => Done::fail(StepError::new(
            "cancelled",
            "the step was cancelled and did not stop by itself",
        )),
        () = backstop => Done::fail(StepError::new(
            "timeout",
            format!(
                "the step did not finish within {}s; raise its timeout if it needs longer",
                limit_or_max.as_secs()
            ),
        )),
    }
}

pub fn report(
    step: &Step,
    status: StepStatus,
    done: &Done,
    attempts: u32,
    elapsed: Duration,
) -> StepReport {
    StepReport {
        step: step.name.clone(),
        kind: kind_of(step),
        status,
        changed: done.changed,
        attempts,
        summary: done.summary.clone(),
        listed: done.listed.clone(),
        reboot_required: done.reboot_required,
        error_kind: done
            .error
            .as_ref()
            .map(|e| e.kind.to_string())
            .or_else(|| done.failed.then(|| "command_failed".to_string())),
        elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(name: &str, status: StepStatus, changed: bool) -> StepReport {
        StepReport {
            step: name.into(),
            kind: StepKind::Command,
            status,
            changed,
            attempts: 1,
            summary: String::new(),
            listed: Vec::new(),
            reboot_required: false,
            error_kind: None,
            elapsed: Duration::ZERO,
        }
    }

    fn when(text: &str) -> Condition {
        Condition::parse(text).expect("a condition")
    }

    #[test]
    fn conditions_read_earlier_outcomes() {
        let history = [
            past("update", StepStatus::Ok, true),
            past("probe", StepStatus::Failed, false),
        ];
        assert!(allowed(&when("changed"), &history));
        assert!(allowed(&when("changed:update"), &history));
        assert!(!allowed(&when("changed:probe"), &history));
        assert!(allowed(&when("failed"), &history));
        assert!(allowed(&when("not failed:update"), &history));
        assert!(allowed(&when("ok:update"), &history));
        assert!(!allowed(&when("ok:probe"), &history));
        assert!(!allowed(&when("reboot_required"), &history));
        assert!(allowed(&when("not reboot_required"), &history));
        assert!(!allowed(&when("changed:never-ran"), &history));
    }
}
