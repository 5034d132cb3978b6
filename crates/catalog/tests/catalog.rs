//! The catalog against a real SQLite file.

use nightshift_catalog::{CATALOG_FILE, Catalog};

#[tokio::test]
async fn creates_migrates_and_reopens_a_real_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CATALOG_FILE);

    let catalog = Catalog::open(&path).await.expect("open new catalog");
    assert_eq!(
        catalog.schema_version().await.expect("version"),
        Catalog::expected_schema_version()
    );
    catalog
        .audit(
            "alice",
            "store key add",
            &serde_json::json!({"key_file": "/root/k", "new_passphrase": "hunter22", "hosts": [{"token": "t"}]}),
            "ok",
        )
        .await
        .expect("audit");
    catalog.close().await;

    assert!(path.is_file(), "the catalog is a file on disk");
    let reopened = Catalog::open(&path).await.expect("reopen");
    assert_eq!(reopened.audit_len().await.expect("count"), 1);
    reopened.close().await;
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("raw connection");
    let written: String = sqlx::query_scalar("SELECT arguments FROM audit_log")
        .fetch_one(&mut conn)
        .await
        .expect("the entry");
    assert!(
        !written.contains("hunter22") && !written.contains("\"t\""),
        "{written}"
    );
    assert!(written.contains("[redacted]"), "{written}");
}

#[tokio::test]
async fn audit_log_refuses_to_be_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CATALOG_FILE);
    let catalog = Catalog::open(&path).await.expect("open");
    catalog
        .audit("bob", "restore", &serde_json::json!({}), "ok")
        .await
        .expect("audit");
    catalog.close().await;

    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("raw connection");
    let err = sqlx::query("DELETE FROM audit_log")
        .execute(&mut conn)
        .await
        .expect_err("deleting audit rows must fail");
    assert!(err.to_string().contains("append-only"), "{err}");
}

use chrono::{DateTime, Duration, TimeZone, Utc};
use nightshift_catalog::{
    JobStatus, NewRun, PackageChange, PackageState, RunFilter, RunStatus, SnapshotRecord, StepEnd,
    StepKind, StepStatus, Trigger,
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
async fn pending_updates_keep_when_they_were_first_seen_until_applied() {
    let (_dir, catalog) = fresh().await;
    let run = patch_run(&catalog).await;
    let pending = |version: &str| {
        vec![
            PackageState {
                name: "openssl".into(),
                installed: Some("3.0.1".into()),
                upgradable: Some(version.into()),
                security: true,
            },
            PackageState {
                name: "curl".into(),
                installed: Some("7.88".into()),
                upgradable: None,
                security: false,
            },
        ]
    };
    catalog
        .record_packages("web1", &pending("3.0.2"), at(1))
        .await
        .expect("seen");
    catalog
        .record_packages("web1", &pending("3.0.3"), at(5))
        .await
        .expect("seen again");
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert_eq!((web1.pending_updates, web1.pending_security), (1, 1));
    assert!(
        web1.oldest_pending_security
            .as_deref()
            .is_some_and(|t| t.starts_with("2026-11-20T01")),
        "pending since it was first seen, not last: {web1:?}"
    );

    let detail = catalog
        .run_detail(run.0)
        .await
        .expect("detail")
        .expect("run");
    let job = nightshift_catalog::JobId(detail.jobs[0].id);
    let change = PackageChange {
        name: "openssl".into(),
        from: Some("3.0.1".into()),
        to: Some("3.0.3".into()),
        security: true,
    };
    catalog
        .record_package_changes(job, "web1", &[change], at(6))
        .await
        .expect("changes");
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert_eq!(web1.pending_security, 0);
    let history = catalog.history("web1", 0).await.expect("history");
    let patch = history
        .iter()
        .find(|e| e.kind == "patch")
        .expect("a patch event");
    assert_eq!(patch.detail, "openssl 3.0.1 -> 3.0.3 (security)");
    assert_eq!(patch.run_id, Some(run.0));

    catalog
        .set_reboot_required("web1", Some("kernel 6.1.0-27"), at(6))
        .await
        .expect("reboot");
    catalog
        .set_reboot_required("web1", Some("kernel 6.1.0-28"), at(8))
        .await
        .expect("reboot");
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert!(
        web1.reboot_required_since
            .as_deref()
            .is_some_and(|t| t.starts_with("2026-11-20T06"))
    );
    catalog
        .set_reboot_required("web1", None, at(9))
        .await
        .expect("rebooted");
    let fleet = catalog.fleet_state().await.expect("fleet");
    assert!(fleet.iter().all(|h| h.reboot_required_since.is_none()));
}

fn snapshot(id: &str, host: &str, hour: u32) -> SnapshotRecord {
    SnapshotRecord {
        id: id.repeat(64 / id.len()),
        host: host.into(),
        time: at(hour),
        paths: vec!["/etc".into()],
        tags: vec![],
        parent: None,
        files: 10,
        bytes_total: 1000,
        new_bytes_stored: 100,
        job: None,
        damaged_paths: None,
    }
}

#[tokio::test]
async fn rebuilding_snapshots_follows_the_store() {
    let (_dir, catalog) = fresh().await;
    for s in [
        snapshot("a", "web1", 1),
        snapshot("b", "web1", 2),
        snapshot("c", "db1", 2),
    ] {
        catalog.record_snapshot(&s).await.expect("record");
    }
    // The store has lost b (forgotten) and gained d, and c is damaged.
    let mut damaged = snapshot("c", "db1", 2);
    damaged.damaged_paths = Some(3);
    let store = [snapshot("a", "web1", 1), damaged, snapshot("d", "web1", 4)];
    let (changed, forgotten) = catalog
        .rebuild_snapshots(&store, at(5))
        .await
        .expect("rebuild");
    assert_eq!((changed, forgotten), (2, 1));
    assert_eq!(
        catalog
            .rebuild_snapshots(&store, at(6))
            .await
            .expect("again"),
        (0, 0)
    );
    let history = catalog.history("web1", 0).await.expect("history");
    let backups: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "backup")
        .map(|e| (e.detail[..8].to_string(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        backups,
        [
            ("dddddddd".into(), "ok"),
            ("bbbbbbbb".into(), "forgotten"),
            ("aaaaaaaa".into(), "ok")
        ]
    );
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert_eq!(
        web1.last_backup_snapshot.as_deref(),
        Some("d".repeat(64).as_str())
    );
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

/// A catalog made at each earlier schema version, with data in it, is
/// brought up to date by opening it, and its data survives.
#[tokio::test]
async fn every_earlier_schema_version_upgrades_with_its_data() {
    use sqlx::Connection;
    let all = sqlx::migrate::Migrator::new(std::path::Path::new("../../migrations"))
        .await
        .expect("migrations");
    let latest = Catalog::expected_schema_version();
    for version in all.iter().map(|m| m.version).filter(|v| *v < latest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CATALOG_FILE);
        let mut older = sqlx::migrate::Migrator::new(std::path::Path::new("../../migrations"))
            .await
            .expect("migrations");
        older.migrations = older
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        older
            .run(&mut conn)
            .await
            .expect("migrate to the older version");
        // Data every version has had since 0001.
        for sql in [
            "INSERT INTO hosts (id, name, first_seen, last_seen) VALUES (1, 'web1', '2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z')",
            "INSERT INTO runs (id, playbook, trigger, started, finished, status) VALUES (7, 'web-patch', 'schedule', '2026-01-02T02:00:00.000Z', '2026-01-02T02:10:00.000Z', 'ok')",
            "INSERT INTO jobs (id, run_id, host_id, batch, status, started, finished) VALUES (1, 7, 1, 1, 'ok', '2026-01-02T02:00:00.000Z', '2026-01-02T02:10:00.000Z')",
            "INSERT INTO steps (job_id, position, name, kind, status, attempts, output_head) VALUES (1, 0, 'patch', 'update', 'ok', 1, 'done')",
            "INSERT INTO audit_log (at, actor, action, arguments, outcome) VALUES ('2026-01-02T02:00:00.000Z', 'cron', 'run', '{}', 'ok')",
        ] {
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .expect("fixture row");
        }
        conn.close().await.expect("close");

        let catalog = Catalog::open(&path).await.expect("upgrade");
        assert_eq!(catalog.schema_version().await.expect("version"), latest);
        let detail = catalog
            .run_detail(7)
            .await
            .expect("detail")
            .expect("run 7 survived");
        assert_eq!(detail.jobs[0].host, "web1", "from version {version}");
        assert_eq!(detail.jobs[0].steps[0].output_tail.as_deref(), Some("done"));
        assert_eq!(catalog.audit_len().await.expect("audit"), 1);
        assert_eq!(catalog.fleet_state().await.expect("fleet").len(), 1);
        catalog.close().await;
    }
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

async fn a_run(catalog: &Catalog, playbook: &str) -> nightshift_catalog::RunId {
    catalog
        .begin_run(&NewRun {
            playbook,
            trigger: Trigger::Schedule,
            operator: None,
            window: Some("weeknights"),
            started: at(1),
        })
        .await
        .expect("run")
}

#[tokio::test]
async fn a_playbook_holds_a_host_once_until_its_run_lets_go() {
    use nightshift_catalog::Lease;
    let (_dir, catalog) = fresh().await;
    let first = a_run(&catalog, "web-patch").await;
    let second = a_run(&catalog, "web-patch").await;
    let backup = a_run(&catalog, "db-backup").await;
    let take = |run| catalog.take_lease("web01", "web-patch", run, at(1));
    assert_eq!(take(first).await.expect("lease"), Lease::Taken);
    // Taking it again in the same run is fine (a retry of the host).
    assert_eq!(take(first).await.expect("lease"), Lease::Taken);
    assert!(matches!(
        take(second).await.expect("lease"),
        Lease::Held { run, .. } if run == first.0
    ));
    // Another playbook on the same host is not held up.
    assert_eq!(
        catalog
            .take_lease("web01", "db-backup", backup, at(1))
            .await
            .expect("lease"),
        Lease::Taken
    );
    catalog
        .release_lease("web01", "web-patch", first)
        .await
        .expect("release");
    assert_eq!(take(second).await.expect("lease"), Lease::Taken);
    // A lease whose run has ended is stale and taken over.
    catalog
        .finish_run(second, RunStatus::Ok, None, at(2))
        .await
        .expect("finish");
    assert_eq!(take(first).await.expect("lease"), Lease::Taken);
    assert_eq!(catalog.leases().await.expect("count"), 2);
}

#[tokio::test]
async fn a_lease_of_a_dead_controller_is_taken_over() {
    use nightshift_catalog::Lease;
    let (dir, catalog) = fresh().await;
    let dead = a_run(&catalog, "web-patch").await;
    let live = a_run(&catalog, "web-patch").await;
    catalog
        .take_lease("web01", "web-patch", dead, at(1))
        .await
        .expect("lease");
    // The holder's controller is a process of this machine that is gone.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        dir.path().join(CATALOG_FILE).display()
    ))
    .await
    .expect("raw connection");
    sqlx::query("UPDATE host_leases SET controller_pid = 999999999")
        .execute(&mut conn)
        .await
        .expect("plant a dead pid");
    assert_eq!(
        catalog
            .take_lease("web01", "web-patch", live, at(2))
            .await
            .expect("lease"),
        Lease::Taken
    );
}

#[tokio::test]
async fn fires_move_the_cursor_and_link_to_their_runs() {
    use nightshift_catalog::{FireOutcome, FireRecord};
    let (_dir, catalog) = fresh().await;
    assert_eq!(catalog.schedule_cursor("s1").await.expect("cursor"), None);
    let fires = [
        FireRecord {
            schedule: "s1",
            playbook: "web-patch",
            fire: at(1),
            outcome: FireOutcome::Missed,
            detail: Some("the daemon was down".into()),
        },
        FireRecord {
            schedule: "s1",
            playbook: "web-patch",
            fire: at(2),
            outcome: FireOutcome::Started,
            detail: None,
        },
    ];
    let ids = catalog
        .record_fires("s1", at(3), &fires)
        .await
        .expect("record");
    assert_eq!(
        catalog.schedule_cursor("s1").await.expect("cursor"),
        Some(at(3))
    );
    let run = a_run(&catalog, "web-patch").await;
    catalog.link_fire(ids[1], run).await.expect("link");
    let rows = catalog.fires("s1", 10).await.expect("fires");
    let seen: Vec<(&str, Option<i64>)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.run_id))
        .collect();
    assert_eq!(seen, [("started", Some(run.0)), ("missed", None)]);
    assert_eq!(rows[1].detail.as_deref(), Some("the daemon was down"));
}

#[tokio::test]
async fn trigger_requests_go_from_pending_to_started() {
    use nightshift_catalog::{NewTrigger, TriggerState};
    let (_dir, catalog) = fresh().await;
    let id = catalog
        .request_trigger(&NewTrigger {
            playbook: "web-patch",
            host_limit: Some("web01"),
            ignore_window: true,
            reason: Some("CVE fix"),
            requested_by: "alice",
            at: at(9),
        })
        .await
        .expect("request");
    let open = catalog.open_triggers().await.expect("open");
    assert_eq!(open.len(), 1);
    assert!(open[0].ignore_window);
    assert_eq!(open[0].host_limit.as_deref(), Some("web01"));
    catalog
        .update_trigger(id, TriggerState::Waiting, Some("window closed"), None)
        .await
        .expect("wait");
    assert_eq!(catalog.open_triggers().await.expect("open").len(), 1);
    let run = a_run(&catalog, "web-patch").await;
    catalog
        .update_trigger(id, TriggerState::Started, None, Some(run))
        .await
        .expect("start");
    assert!(catalog.open_triggers().await.expect("open").is_empty());
    let row = catalog.trigger(id).await.expect("read").expect("row");
    assert_eq!((row.state.as_str(), row.run_id), ("started", Some(run.0)));
}

#[tokio::test]
async fn a_deferred_host_waits_until_a_later_job_of_the_playbook() {
    let (_dir, catalog) = fresh().await;
    let first = a_run(&catalog, "web-patch").await;
    for (host, status) in [("web01", JobStatus::Ok), ("web02", JobStatus::Deferred)] {
        let job = catalog
            .begin_job(first, host, None, 1, at(1))
            .await
            .expect("job");
        catalog
            .finish_job_saying(job, status, None, Some("outside window late"), at(1))
            .await
            .expect("finish");
    }
    let deferred = catalog.deferred_hosts().await.expect("deferred");
    assert_eq!(deferred.len(), 1);
    assert_eq!(
        (deferred[0].host.as_str(), deferred[0].run_id),
        ("web02", first.0)
    );
    let detail = catalog.run_detail(first.0).await.expect("d").expect("run");
    assert_eq!(
        detail.jobs[1].detail.as_deref(),
        Some("outside window late")
    );
    // Another playbook's job does not pick it up; the same playbook's does.
    let other = a_run(&catalog, "db-backup").await;
    let job = catalog
        .begin_job(other, "web02", None, 1, at(2))
        .await
        .expect("job");
    catalog
        .finish_job(job, JobStatus::Ok, None, at(2))
        .await
        .expect("finish");
    assert_eq!(catalog.deferred_hosts().await.expect("d").len(), 1);
    let later = a_run(&catalog, "web-patch").await;
    let job = catalog
        .begin_job(later, "web02", None, 1, at(3))
        .await
        .expect("job");
    catalog
        .finish_job(job, JobStatus::Ok, None, at(3))
        .await
        .expect("finish");
    assert!(catalog.deferred_hosts().await.expect("d").is_empty());
    let figures = catalog.figures().await.expect("figures");
    assert_eq!(figures.steps_in_flight, 0);
    assert!(
        figures.hosts.contains(&("ok".to_string(), 2)),
        "{:?}",
        figures.hosts
    );
    assert!(figures.runs.is_empty(), "running runs are not counted yet");
    assert_eq!(figures.runs_in_progress, 3);
}

#[tokio::test]
async fn an_update_that_turns_into_a_security_one_starts_its_own_history() {
    let (_dir, catalog) = fresh().await;
    patch_run(&catalog).await;
    let offered = |security| {
        vec![PackageState {
            name: "libxml2".into(),
            installed: Some("2.9.14".into()),
            upgradable: Some("2.9.14+1".into()),
            security,
        }]
    };
    catalog
        .record_packages("web1", &offered(false), at(1))
        .await
        .expect("seen");
    catalog
        .record_packages("web1", &offered(true), at(5))
        .await
        .expect("seen again");
    let web1 = |facts: Vec<nightshift_catalog::HostFacts>| {
        facts
            .into_iter()
            .find(|f| f.host == "web1")
            .expect("web1 is known")
    };
    let before = web1(catalog.host_facts(at(4)).await.expect("facts"));
    assert_eq!(
        before.security_pending_since, None,
        "not a security update then"
    );
    assert_eq!(before.other_pending_since, Some(at(1)));
    let after = web1(catalog.host_facts(at(6)).await.expect("facts"));
    assert_eq!(after.security_pending_since, Some(at(5)));
    assert_eq!(after.other_pending_since, None);
}
