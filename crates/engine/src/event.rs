//! What a rollout reports while it runs, in the order it happens: the CLI
//! draws a live view from these, prints log lines, or writes one JSON object
//! per line (`nightshift run --json`).

use std::time::Duration;

use serde::Serialize;

pub use nightshift_catalog::{JobStatus, PackageChange, StepKind, StepStatus};

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        /// The catalog's run id (absent when nothing is recorded).
        run: Option<i64>,
        playbook: String,
        hosts: usize,
        batches: Vec<usize>,
        max_failures: usize,
        check: bool,
    },
    BatchStarted {
        batch: usize,
        of: usize,
        hosts: Vec<String>,
    },
    StepStarted {
        host: String,
        step: String,
        kind: StepKind,
    },
    /// A line of a step's output, or of what the engine is doing for it.
    Progress {
        host: String,
        step: String,
        text: String,
    },
    StepFinished {
        host: String,
        #[serde(flatten)]
        step: StepReport,
    },
    HostFinished(JobReport),
    Halted {
        reason: String,
    },
    RunFinished(RunReport),
}

/// How one step went on one host.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub changed: bool,
    pub attempts: u32,
    /// One line a person reads: "2 packages upgraded", "exit 1".
    pub summary: String,
    /// The step found that the host needs a reboot.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reboot_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// How one host's job went.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub host: String,
    pub batch: usize,
    pub status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// Why the job failed or stopped, as a person reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<StepReport>,
    /// Packages this job upgraded: name, from, to.
    pub updated: Vec<PackageChange>,
    /// How long a reboot took, when the job rebooted the host.
    #[serde(with = "opt_millis", skip_serializing_if = "Option::is_none")]
    pub reboot: Option<Duration>,
    /// The snapshot a backup step saved, with what was new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupReport>,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

impl JobReport {
    /// A job with nothing done yet.
    pub fn new(host: &str, batch: usize, status: JobStatus) -> Self {
        Self {
            host: host.to_string(),
            batch,
            status,
            error_kind: None,
            error: None,
            steps: Vec::new(),
            updated: Vec::new(),
            reboot: None,
            backup: None,
            elapsed: Duration::ZERO,
        }
    }

    pub fn failed(&self) -> bool {
        self.status == JobStatus::Failed
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub snapshot: String,
    pub files: u64,
    pub bytes_read: u64,
    pub new_bytes_stored: u64,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// How the whole run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: Option<i64>,
    pub playbook: String,
    pub status: nightshift_catalog::RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted_because: Option<String>,
    pub hosts: usize,
    pub ok: usize,
    pub failed: usize,
    /// Hosts never started because the run halted or was stopped.
    pub skipped: usize,
    /// Hosts waiting for their own window.
    pub deferred: usize,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

impl RunReport {
    /// Every host succeeded (or waits for its window) and the run did not
    /// halt.
    pub fn success(&self) -> bool {
        self.status == nightshift_catalog::RunStatus::Ok
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod opt_millis {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}
