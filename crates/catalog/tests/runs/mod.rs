//! Runs: recorded per host and step and read back, many jobs in one go,
//! full output dropped after its retention (head and tail kept), and runs
//! cut short or of gone controllers read as interrupted.

use chrono::Duration;
use nightshift_catalog::{
    CATALOG_FILE, Catalog, JobStatus, NewRun, RunFilter, StepKind, StepStatus, Trigger,
};

use crate::{at, ended, fresh, patch_run};

#[tokio::test]
async fn a_run_is_recorded_per_host_and_step_and_read_back() {
    let (_dir, catalog) = fresh().await;
    let run = patch_run(&catalog).await;
    let runs = catalog.runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].hosts, runs[0].hosts_failed), (2, 1));
    assert_eq!(runs[0].status, "failed");
    let failed = catalog
        .runs(&RunFilter {
            failed_only: true,
            host: Some("web1".into()),
            ..RunFilter::default()
        })
        .await
        .expect("runs");
    assert_eq!(failed.len(), 1, "web1 took part in a run that failed");
    let none = catalog
        .runs(&RunFilter {
            playbook: Some("db-backup".into()),
            ..RunFilter::default()
        })
        .await
        .expect("runs");
    assert!(none.is_empty());

    let detail = catalog
        .run_detail(run.0)
        .await
        .expect("detail")
        .expect("a run");
    let hosts: Vec<_> = detail
        .jobs
        .iter()
        .map(|j| (j.host.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(hosts, [("web1", "ok"), ("web2", "failed")]);
    let step = &detail.jobs[1].steps[0];
    assert_eq!((step.kind.as_str(), step.exit_code), ("update", Some(1)));
    let tail = step.output_tail.as_deref().expect("a tail");
    assert!(tail.len() <= nightshift_catalog::OUTPUT_EDGE && tail.ends_with("apt output line\n"));

    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    let web2 = fleet.iter().find(|h| h.host == "web2").expect("web2");
    assert!(
        web1.last_patch_at
            .as_deref()
            .is_some_and(|t| t.starts_with("2026-11-20T03"))
    );
    assert_eq!(web2.last_patch_at, None, "a failed update is no patch");
    assert_eq!(web2.last_error_kind.as_deref(), Some("exit"));
}

#[tokio::test]
async fn a_run_cut_short_reads_as_interrupted_on_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CATALOG_FILE);
    let catalog = Catalog::open(&path).await.expect("open");
    let run = catalog
        .begin_run(&NewRun {
            playbook: "web-patch",
            trigger: Trigger::Manual,
            operator: Some("alice"),
            window: None,
            started: at(2),
            cause: Default::default(),
        })
        .await
        .expect("run");
    let job = catalog
        .begin_job(run, "web1", None, 1, at(2))
        .await
        .expect("job");
    catalog
        .begin_step(job, 0, "patch", StepKind::Update, at(2))
        .await
        .expect("step");
    // The controller dies here: nothing finishes.
    drop(catalog);

    let catalog = Catalog::open(&path).await.expect("reopen");
    let found = catalog.interrupt(at(4)).await.expect("interrupt");
    assert_eq!((found.runs, found.jobs, found.steps), (1, 1, 1));
    let detail = catalog
        .run_detail(run.0)
        .await
        .expect("detail")
        .expect("a run");
    assert_eq!(detail.run.status, "interrupted");
    assert_eq!(detail.jobs[0].status, "interrupted");
    assert_eq!(detail.jobs[0].steps[0].status, "interrupted");
    assert_eq!(catalog.interrupt(at(5)).await.expect("again").runs, 0);
}

#[tokio::test]
async fn full_output_goes_after_its_retention_and_head_and_tail_stay() {
    let (dir, catalog) = fresh().await;
    let run = patch_run(&catalog).await;
    let pruned = catalog
        .prune_output(at(3) + Duration::days(90))
        .await
        .expect("prune");
    assert_eq!(pruned, 2, "both steps had long output");
    assert_eq!(
        catalog
            .prune_output(at(3) + Duration::days(91))
            .await
            .expect("again"),
        0
    );
    let detail = catalog
        .run_detail(run.0)
        .await
        .expect("detail")
        .expect("run");
    assert!(detail.jobs.iter().all(|j| j.steps[0].output_tail.is_some()));
    drop(dir);
}

#[tokio::test]
async fn many_finished_jobs_are_recorded_in_one_go() {
    use nightshift_catalog::{FinishedJob, FinishedStep};
    let (_dir, catalog) = fresh().await;
    let run = catalog
        .begin_run(&NewRun {
            playbook: "web-patch",
            trigger: Trigger::Api,
            operator: Some("ci"),
            window: None,
            started: at(1),
            cause: Default::default(),
        })
        .await
        .expect("run");
    let long = "x".repeat(3 * nightshift_catalog::OUTPUT_EDGE);
    let hosts: Vec<String> = (0..2500).map(|n| format!("h{n:04}")).collect();
    let jobs: Vec<FinishedJob<'_>> = hosts
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let ok = n % 10 != 0;
            let status = if ok {
                StepStatus::Ok
            } else {
                StepStatus::Failed
            };
            let output = if n == 7 {
                long.as_bytes()
            } else {
                b"fine\n".as_slice()
            };
            FinishedJob {
                host,
                batch: (n / 1000) as u32,
                status: if ok { JobStatus::Ok } else { JobStatus::Failed },
                error_kind: (!ok).then_some("exit"),
                started: at(1),
                finished: at(2),
                steps: vec![
                    FinishedStep {
                        name: "refresh",
                        kind: StepKind::Command,
                        started: at(1),
                        end: ended(StepStatus::Ok, output, at(1)),
                    },
                    FinishedStep {
                        name: "patch",
                        kind: StepKind::Update,
                        started: at(1),
                        end: ended(status, b"done\n", at(2)),
                    },
                ],
            }
        })
        .collect();
    let ids = catalog.record_jobs(run, &jobs).await.expect("record");
    assert_eq!(ids.len(), 2500);
    let detail = catalog
        .run_detail(run.0)
        .await
        .expect("detail")
        .expect("run");
    assert_eq!(detail.jobs.len(), 2500);
    let h0007 = detail
        .jobs
        .iter()
        .find(|j| j.host == "h0007")
        .expect("h0007");
    assert_eq!(h0007.id, ids[7].0, "ids come back in the order given");
    assert_eq!(h0007.steps.len(), 2);
    assert!(
        h0007.steps[0]
            .output_tail
            .as_deref()
            .is_some_and(|t| t.len() == nightshift_catalog::OUTPUT_EDGE)
    );
    let fleet = catalog.fleet_state().await.expect("fleet");
    let patched = fleet.iter().filter(|h| h.last_patch_at.is_some()).count();
    assert_eq!(patched, 2250, "every host whose update succeeded");
    assert_eq!(
        catalog.prune_output(at(3)).await.expect("prune"),
        1,
        "one long output kept in full"
    );
}

/// Only the runs of a controller that is gone are interrupted: a run of a
/// live process (a daemon beside a manual run) is left running.
#[tokio::test]
async fn only_runs_of_gone_controllers_read_as_interrupted() {
    let (dir, catalog) = fresh().await;
    let begin = |playbook: &'static str| {
        let catalog = catalog.clone();
        async move {
            catalog
                .begin_run(&NewRun {
                    playbook,
                    trigger: Trigger::Manual,
                    operator: None,
                    window: None,
                    started: at(2),
                    cause: Default::default(),
                })
                .await
                .expect("run")
        }
    };
    let live = begin("live").await;
    let dead = begin("dead").await;
    let foreign = begin("foreign").await;
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = gone.id();
    gone.wait().expect("reaped");
    let url = format!("sqlite://{}", dir.path().join(CATALOG_FILE).display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
    sqlx::query("UPDATE runs SET controller_pid = ? WHERE id = ?")
        .bind(dead_pid)
        .bind(dead.0)
        .execute(&pool)
        .await
        .expect("plant a dead pid");
    sqlx::query(
        "UPDATE runs SET controller = 'elsewhere.example', controller_pid = 1 WHERE id = ?",
    )
    .bind(foreign.0)
    .execute(&pool)
    .await
    .expect("plant another host");
    pool.close().await;

    let found = catalog.interrupt_orphans(at(3)).await.expect("interrupt");
    assert_eq!(found.runs, 1);
    let status = |run: nightshift_catalog::RunId| {
        let catalog = catalog.clone();
        async move {
            catalog
                .run_detail(run.0)
                .await
                .expect("detail")
                .expect("a run")
                .run
                .status
        }
    };
    assert_eq!(status(dead).await, "interrupted");
    assert_eq!(status(live).await, "running", "this process is alive");
    assert_eq!(
        status(foreign).await,
        "running",
        "another host's run is not judged here"
    );
}
