//! The catalog against a real SQLite file.

mod runs;
mod scheduling;
mod schema;
mod snapshots;
mod updates;

use chrono::{DateTime, TimeZone, Utc};
use nightshift_catalog::{
    CATALOG_FILE, Catalog, JobStatus, NewRun, RunStatus, StepEnd, StepKind, StepStatus, Trigger,
};

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, hour, 0, 0).unwrap()
}

async fn fresh() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(&dir.path().join(CATALOG_FILE))
        .await
        .expect("open");
    (dir, catalog)
}

fn ended(status: StepStatus, output: &[u8], finished: DateTime<Utc>) -> StepEnd<'_> {
    StepEnd {
        status,
        exit_code: Some(i32::from(status != StepStatus::Ok)),
        signal: None,
        attempts: 1,
        changed: status == StepStatus::Ok,
        output,
        finished,
    }
}

/// A patch run over web1 (update ok) and web2 (update failed).
async fn patch_run(catalog: &Catalog) -> nightshift_catalog::RunId {
    let run = catalog
        .begin_run(&NewRun {
            playbook: "web-patch",
            trigger: Trigger::Schedule,
            operator: None,
            window: Some("nightly"),
            started: at(2),
            cause: Default::default(),
        })
        .await
        .expect("run");
    for (host, status) in [("web1", StepStatus::Ok), ("web2", StepStatus::Failed)] {
        let job = catalog
            .begin_job(run, host, None, 1, at(2))
            .await
            .expect("job");
        let step = catalog
            .begin_step(job, 0, "patch", StepKind::Update, at(2))
            .await
            .expect("step");
        let output = format!("{host}: {}", "apt output line\n".repeat(1000));
        catalog
            .finish_step(step, &ended(status, output.as_bytes(), at(3)))
            .await
            .expect("finish step");
        let (job_status, kind) = match status {
            StepStatus::Ok => (JobStatus::Ok, None),
            _ => (JobStatus::Failed, Some("exit")),
        };
        catalog
            .finish_job(job, job_status, kind, at(3))
            .await
            .expect("finish job");
    }
    catalog
        .finish_run(run, RunStatus::Failed, None, at(3))
        .await
        .expect("finish run");
    run
}
