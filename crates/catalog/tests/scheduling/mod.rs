//! What the scheduler keeps in the catalog: leases of hosts per playbook,
//! fires and their cursor, trigger requests, and deferred hosts.

use nightshift_catalog::{CATALOG_FILE, Catalog, JobStatus, NewRun, RunCause, RunStatus, Trigger};

use crate::{at, fresh};

async fn a_run(catalog: &Catalog, playbook: &str) -> nightshift_catalog::RunId {
    catalog
        .begin_run(&NewRun {
            playbook,
            trigger: Trigger::Schedule,
            operator: None,
            window: Some("weeknights"),
            started: at(1),
            cause: Default::default(),
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
    // The run answering the started fire names it as it is recorded.
    let run = catalog
        .begin_run(&NewRun {
            playbook: "web-patch",
            trigger: Trigger::Schedule,
            operator: None,
            window: Some("weeknights"),
            started: at(3),
            cause: RunCause {
                schedule: Some("s1"),
                fire: Some(ids[1]),
                request: None,
            },
        })
        .await
        .expect("run");
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
        .update_trigger(id, TriggerState::Waiting, Some("window closed"))
        .await
        .expect("wait");
    assert_eq!(catalog.open_triggers().await.expect("open").len(), 1);
    // The run answering the request starts it as the run is recorded.
    let run = catalog
        .begin_run(&NewRun {
            playbook: "web-patch",
            trigger: Trigger::Manual,
            operator: Some("alice"),
            window: None,
            started: at(10),
            cause: RunCause {
                schedule: Some("trigger:1"),
                fire: None,
                request: Some(id),
            },
        })
        .await
        .expect("run");
    assert!(catalog.open_triggers().await.expect("open").is_empty());
    let row = catalog.trigger(id).await.expect("read").expect("row");
    assert_eq!(
        (row.state.as_str(), row.run_id, row.detail),
        ("started", Some(run.0), None)
    );
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
