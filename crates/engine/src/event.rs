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
    /// One line a person reads: "2 packages upgraded", "exit 1". When it
    /// counts a list, the list is in `listed`.
    pub summary: String,
    /// Everything the summary counts, in full: the packages a check would
    /// upgrade, those left at their old version, the restored files that
    /// differ. Whoever draws the summary on a screen shows the first few.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<String>,
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
    /// Packages a step in check mode found it would upgrade: name, from,
    /// and the version it would go to. Nothing was changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_update: Vec<PackageChange>,
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
            would_update: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str) -> PackageChange {
        PackageChange {
            name: name.into(),
            from: Some("1.0".into()),
            to: Some("1.1".into()),
            security: false,
        }
    }

    #[test]
    fn json_events_carry_the_whole_list_a_summary_counts() {
        let step = StepReport {
            step: "pending updates".into(),
            kind: StepKind::Update,
            status: StepStatus::Skipped,
            changed: false,
            attempts: 1,
            summary: "would upgrade 2 packages (0 security)".into(),
            listed: vec!["bash".into(), "curl".into()],
            reboot_required: false,
            error_kind: None,
            elapsed: Duration::from_millis(1500),
        };
        let mut job = JobReport::new("web1", 1, JobStatus::Ok);
        job.would_update = vec![change("bash"), change("curl")];
        job.steps.push(step.clone());
        let finished = serde_json::to_value(Event::StepFinished {
            host: "web1".into(),
            step,
        })
        .expect("JSON");
        assert_eq!(finished["listed"], serde_json::json!(["bash", "curl"]));
        let host = serde_json::to_value(Event::HostFinished(job)).expect("JSON");
        assert_eq!(host["updated"], serde_json::json!([]));
        assert_eq!(host["would_update"][1]["name"], "curl");
        assert_eq!(host["would_update"][1]["to"], "1.1");
    }

    #[test]
    fn json_events_leave_out_empty_lists() {
        let job = JobReport::new("web1", 1, JobStatus::Ok);
        let host = serde_json::to_value(Event::HostFinished(job)).expect("JSON");
        assert!(host.get("would_update").is_none(), "{host}");
    }
}
