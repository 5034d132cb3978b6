//! The daemon's loop under an injected clock, with real rollouts on this
//! machine (the local transport) and a real catalog: the clock jumps, the
//! runs are real.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use nightshift_catalog::{CATALOG_FILE, Catalog, RunDetail};
use nightshift_scheduler::ManualClock;

use super::{Daemon, DaemonError, load_checked};

fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, s)
        .single()
        .expect("a time")
}

/// A plan tree: config, one playbook, one schedule in a
/// 01:00–02:00 UTC window, and an inventory.
fn tree(dir: &Path, config: &str, cron: &str, steps: &str, inventory: &str) {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "nightshift.toml",
        &format!("inventory = \"inventory.toml\"\n{config}"),
    );
    write(
        "playbooks/work.toml",
        &format!("name = \"work\"\ntargets = [\"all\"]\n{steps}"),
    );
    write(
        "schedules/nightly.toml",
        &format!(
            "[[schedule]]\nplaybook = \"work\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nwindow = \"nightly\"\n\n\
         [windows.nightly]\nstart = \"01:00\"\nend = \"02:00\"\n\n\
         [windows.late]\nstart = \"03:00\"\nend = \"04:00\"\n"
        ),
    );
    write("inventory.toml", inventory);
}

const EVERY_MINUTE: &str = "* * * * *";

const ONE_HOST: &str = "[hosts.alpha]\naddress = \"localhost\"\n";

async fn daemon(dir: &Path, clock: &ManualClock) -> Daemon {
    let config = dir.join("nightshift.toml");
    let (settings, plan) = match load_checked(Some(config), dir.join("data")) {
        Ok(loaded) => loaded,
        Err(DaemonError::Plan(nightshift_plan::PlanError::Rejected(report))) => {
            let problems: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
            panic!("the test plan is invalid:\n{}", problems.join("\n"))
        }
        Err(err) => panic!("the test plan cannot be read: {err}"),
    };
    std::fs::create_dir_all(&settings.data_dir).expect("data dir");
    let catalog = Catalog::open(&settings.data_dir.join(CATALOG_FILE))
        .await
        .expect("catalog");
    Daemon::new(settings, plan, catalog, Arc::new(clock.clone())).expect("daemon")
}

/// Ticks (the clock standing still) until no run is in progress.
async fn settle(daemon: &mut Daemon) {
    for _ in 0..300 {
        daemon.reap().await;
        if daemon.runs.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("runs did not end");
}

async fn only_run(catalog: &Catalog) -> RunDetail {
    let runs = catalog
        .runs(&nightshift_catalog::RunFilter::default())
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    catalog
        .run_detail(runs[0].id)
        .await
        .expect("detail")
        .expect("run")
}

/// Each job of a run: host, status, error kind.
fn outcomes(run: &RunDetail) -> Vec<(&str, &str, Option<&str>)> {
    run.jobs
        .iter()
        .map(|j| (j.host.as_str(), j.status.as_str(), j.error_kind.as_deref()))
        .collect()
}

/// Waits (in real time) for a step to be running.
async fn until_running(catalog: &Catalog, step: &str) {
    for _ in 0..100 {
        let running = step_status(catalog, step).await;
        if running.as_deref() == Some("running") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("step {step} never ran");
}

async fn step_status(catalog: &Catalog, step: &str) -> Option<String> {
    let runs = catalog
        .runs(&nightshift_catalog::RunFilter::default())
        .await
        .ok()?;
    let detail = catalog.run_detail(runs.first()?.id).await.ok()??;
    detail
        .jobs
        .iter()
        .flat_map(|j| &j.steps)
        .find(|s| s.name == step)
        .map(|s| s.status.clone())
}

#[tokio::test]
async fn a_fire_outside_the_window_never_runs_and_one_inside_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(
        dir.path(),
        "",
        EVERY_MINUTE,
        "[[steps]]\nname = \"hello\"\ncommand = \"echo hello\"\n",
        ONE_HOST,
    );
    let clock = ManualClock::new(utc(0, 58, 30));
    let mut daemon = daemon(dir.path(), &clock).await;
    // Two fires before the window opens at 01:00: nothing starts.
    for t in [utc(0, 58, 30), utc(0, 59, 5), utc(0, 59, 35)] {
        clock.set(t);
        daemon.tick().await;
        assert!(daemon.runs.is_empty(), "nothing may start at {t}");
    }
    clock.set(utc(1, 0, 5));
    daemon.tick().await;
    assert_eq!(daemon.runs.len(), 1, "the 01:00 fire starts a run");
    settle(&mut daemon).await;
    let run = only_run(&daemon.catalog).await;
    assert_eq!(run.run.status, "ok");
    assert_eq!(run.run.window.as_deref(), Some("nightly"));
    assert_eq!(run.jobs[0].steps[0].output_tail.as_deref(), Some("hello\n"));
    let fires = daemon
        .catalog
        .fires(&daemon.entries[0].key, 10)
        .await
        .expect("fires");
    assert_eq!(fires.len(), 1);
    assert_eq!(
        (fires[0].outcome.as_str(), fires[0].run_id),
        ("started", Some(run.run.id))
    );
}

#[tokio::test]
async fn a_window_closing_mid_run_drains_then_cancels_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(
        dir.path(),
        "[daemon]\ngrace = \"5s\"\n",
        EVERY_MINUTE,
        "serial = 1\n\n[[steps]]\nname = \"long\"\ncommand = \"sleep 60\"\n\n[[steps]]\nname = \"after\"\ncommand = \"true\"\n",
        "[hosts.h1]\naddress = \"localhost\"\n[hosts.h2]\naddress = \"localhost\"\n[hosts.h3]\naddress = \"localhost\"\n",
    );
    let clock = ManualClock::new(utc(1, 58, 30));
    let mut daemon = daemon(dir.path(), &clock).await;
    daemon.tick().await;
    clock.set(utc(1, 59, 2));
    daemon.tick().await;
    assert_eq!(daemon.runs.len(), 1, "the 01:59 fire starts");
    until_running(&daemon.catalog, "long").await;
    // 02:00: the window closes; inside the grace period the step goes on.
    clock.set(utc(2, 0, 1));
    daemon.tick().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.reap().await;
    assert_eq!(daemon.runs.len(), 1, "the step has its grace period");
    assert!(daemon.runs[0].stop.draining().is_some());
    assert!(!daemon.runs[0].stop.is_cancelled());
    // The grace period is over: the step is cancelled.
    clock.set(utc(2, 0, 7));
    daemon.tick().await;
    settle(&mut daemon).await;
    let run = only_run(&daemon.catalog).await;
    assert_eq!(run.run.status, "interrupted");
    let why = run.run.halted_because.clone().unwrap_or_default();
    assert!(
        why.starts_with("the window nightly closed at 2026-12-01 02:00 UTC"),
        "{why}"
    );
    assert!(why.ends_with(": 2 hosts not started, 1 cut short"), "{why}");
    assert_eq!(
        outcomes(&run)[1..],
        [
            ("h2", "skipped", Some("window_closed")),
            ("h3", "skipped", Some("window_closed"))
        ],
        "no batch starts after the close"
    );
    let job = &run.jobs[0];
    assert_eq!(
        (job.status.as_str(), job.error_kind.as_deref()),
        ("interrupted", Some("window_closed"))
    );
    let steps: Vec<(&str, &str)> = job
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(steps, [("long", "interrupted"), ("after", "skipped")]);
    // The next fire (02:00 was outside the window) does not start a run.
    clock.set(utc(2, 1, 2));
    daemon.tick().await;
    assert!(daemon.runs.is_empty());
}

#[tokio::test]
async fn a_host_whose_own_window_is_closed_is_deferred_and_picked_up_when_it_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(
        dir.path(),
        "",
        EVERY_MINUTE,
        "[[steps]]\nname = \"hello\"\ncommand = \"echo \\\"$NIGHTSHIFT_HOST\\\"\"\n",
        "[hosts.alpha]\naddress = \"localhost\"\n\n[hosts.beta]\naddress = \"localhost\"\nwindow = \"late\"\n",
    );
    let clock = ManualClock::new(utc(1, 29, 30));
    let mut daemon = daemon(dir.path(), &clock).await;
    daemon.tick().await;
    clock.set(utc(1, 30, 3));
    daemon.tick().await;
    settle(&mut daemon).await;
    let run = only_run(&daemon.catalog).await;
    assert_eq!(
        run.run.status, "ok",
        "a deferred host does not fail the run"
    );
    let jobs: Vec<(&str, &str)> = run
        .jobs
        .iter()
        .map(|j| (j.host.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(jobs, [("alpha", "ok"), ("beta", "deferred")]);
    let detail = run.jobs[1].detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with("outside window late; it opens next at 2026-12-01 03:00 UTC"),
        "{detail}"
    );
    // Its window opens at 03:00: a run for beta alone. The 03:00 fire of
    // the schedule itself is outside the nightly window and starts nothing.
    clock.set(utc(3, 0, 40));
    daemon.tick().await;
    assert_eq!(daemon.runs.len(), 1, "the deferred host is picked up");
    settle(&mut daemon).await;
    let runs = daemon
        .catalog
        .runs(&nightshift_catalog::RunFilter::default())
        .await
        .expect("runs");
    assert_eq!(runs.len(), 2);
    let pickup = daemon
        .catalog
        .run_detail(runs[0].id)
        .await
        .expect("detail")
        .expect("run");
    assert_eq!(pickup.run.window.as_deref(), Some("late"));
    let jobs: Vec<(&str, &str)> = pickup
        .jobs
        .iter()
        .map(|j| (j.host.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(jobs, [("beta", "ok")]);
    assert_eq!(
        pickup.jobs[0].steps[0].output_tail.as_deref(),
        Some("beta\n")
    );
    assert!(
        daemon
            .catalog
            .deferred_hosts()
            .await
            .expect("deferred")
            .is_empty()
    );
}

#[tokio::test]
async fn fires_missed_while_the_daemon_was_down_follow_the_catch_up_policy() {
    for (policy, outcome) in [("skip", "missed"), ("once", "caught_up")] {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(
            dir.path(),
            &format!("[daemon]\ncatch_up = \"{policy}\"\n"),
            "5 1 * * *",
            "[[steps]]\nname = \"hello\"\ncommand = \"true\"\n",
            ONE_HOST,
        );
        let clock = ManualClock::new(utc(1, 0, 30));
        let mut first = daemon(dir.path(), &clock).await;
        first.tick().await;
        first.catalog.clone().close().await;
        drop(first);
        // Down from 01:00:30 to 01:30:30, across the 01:05 fire; the
        // window is open until 02:00.
        clock.set(utc(1, 30, 30));
        let mut second = daemon(dir.path(), &clock).await;
        second.tick().await;
        assert_eq!(second.runs.len(), usize::from(policy == "once"), "{policy}");
        settle(&mut second).await;
        let fires = second
            .catalog
            .fires(&second.entries[0].key, 10)
            .await
            .expect("fires");
        assert_eq!(fires.len(), 1, "{policy}: {fires:?}");
        assert_eq!(fires[0].fire, "2026-12-01T01:05:00.000Z");
        assert_eq!(fires[0].outcome, outcome, "{policy}");
        if policy == "skip" {
            assert!(
                fires[0]
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("the daemon was down")),
                "{:?}",
                fires[0].detail
            );
            assert!(
                second
                    .catalog
                    .runs(&Default::default())
                    .await
                    .expect("runs")
                    .is_empty()
            );
        } else {
            let run = only_run(&second.catalog).await;
            assert_eq!(fires[0].run_id, Some(run.run.id));
            assert_eq!(run.run.status, "ok");
        }
    }
}

#[tokio::test]
async fn max_hosts_bounds_the_hosts_worked_on_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("spans");
    tree(
        dir.path(),
        "[daemon]\nmax_hosts = 1\n",
        EVERY_MINUTE,
        &format!(
            "[[steps]]\nname = \"span\"\ncommand = \"echo start $(date +%s.%N) >> {0}; sleep 0.5; echo end $(date +%s.%N) >> {0}\"\n",
            log.display()
        ),
        "[hosts.a]\naddress = \"localhost\"\n[hosts.b]\naddress = \"localhost\"\n[hosts.c]\naddress = \"localhost\"\n",
    );
    let clock = ManualClock::new(utc(1, 10, 30));
    let mut daemon = daemon(dir.path(), &clock).await;
    daemon.tick().await;
    clock.set(utc(1, 11, 1));
    daemon.tick().await;
    settle(&mut daemon).await;
    assert_eq!(only_run(&daemon.catalog).await.run.status, "ok");
    let text = std::fs::read_to_string(&log).expect("spans");
    let marks: Vec<&str> = text.split_whitespace().step_by(2).collect();
    // One host at a time: every start is followed by its end.
    assert_eq!(
        marks,
        ["start", "end", "start", "end", "start", "end"],
        "{text}"
    );
}

#[tokio::test]
async fn a_host_whose_own_window_closes_mid_job_is_stopped_while_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(
        dir.path(),
        "[daemon]\ngrace = \"3s\"\n",
        EVERY_MINUTE,
        "[[steps]]\nname = \"long\"\ncommand = \"if [ $NIGHTSHIFT_HOST = alpha ]; then sleep 60; fi\"\n",
        "[hosts.alpha]\naddress = \"localhost\"\nwindow = \"early\"\n\n[hosts.beta]\naddress = \"localhost\"\n",
    );
    // alpha's own window is 00:30-01:30, inside which the schedule's
    // (01:00-02:00) opens.
    let schedules = dir.path().join("schedules/nightly.toml");
    let mut text = std::fs::read_to_string(&schedules).expect("schedules");
    text.push_str("\n[windows.early]\nstart = \"00:30\"\nend = \"01:30\"\n");
    std::fs::write(&schedules, text).expect("write");
    let clock = ManualClock::new(utc(1, 28, 30));
    let mut daemon = daemon(dir.path(), &clock).await;
    daemon.tick().await;
    clock.set(utc(1, 29, 2));
    daemon.tick().await;
    until_running(&daemon.catalog, "long").await;
    clock.set(utc(1, 30, 1));
    daemon.tick().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    daemon.reap().await;
    assert_eq!(daemon.runs.len(), 1, "alpha has its grace period");
    assert!(
        daemon.runs[0].stop.draining().is_none(),
        "the run's window is open"
    );
    clock.set(utc(1, 30, 5));
    settle(&mut daemon).await;
    let run = only_run(&daemon.catalog).await;
    assert_eq!(
        outcomes(&run),
        [
            ("alpha", "interrupted", Some("window_closed")),
            ("beta", "ok", None)
        ]
    );
    let detail = run.jobs[0].detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with(
            "long was cancelled: the window early of alpha closed at 2026-12-01 01:30 UTC"
        ),
        "{detail}"
    );
    assert_eq!(run.jobs[0].steps[0].status, "interrupted");
}

#[tokio::test]
async fn a_trigger_waits_for_the_playbooks_window_and_starts_when_it_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(
        dir.path(),
        "",
        "30 1 * * *",
        "[[steps]]\nname = \"hello\"\ncommand = \"true\"\n",
        ONE_HOST,
    );
    let clock = ManualClock::new(utc(0, 40, 0));
    let mut daemon = daemon(dir.path(), &clock).await;
    let id = daemon
        .catalog
        .request_trigger(&nightshift_catalog::NewTrigger {
            playbook: "work",
            host_limit: None,
            ignore_window: false,
            reason: None,
            requested_by: "alice",
            at: utc(0, 40, 0),
        })
        .await
        .expect("request");
    daemon.tick().await;
    let request = daemon
        .catalog
        .trigger(id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(request.state, "waiting");
    assert_eq!(
        request.detail.as_deref(),
        Some(
            "waiting: the window nightly is closed; it opens at 2026-12-01 01:00 UTC (--ignore-window --reason … runs it now)"
        )
    );
    assert!(daemon.runs.is_empty());
    clock.set(utc(1, 0, 1));
    daemon.tick().await;
    assert_eq!(daemon.runs.len(), 1, "the window opened");
    settle(&mut daemon).await;
    let run = only_run(&daemon.catalog).await;
    assert_eq!(
        (
            run.run.status.as_str(),
            run.run.trigger.as_str(),
            run.run.window.as_deref()
        ),
        ("ok", "manual", Some("nightly"))
    );
    let request = daemon
        .catalog
        .trigger(id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        (request.state.as_str(), request.run_id),
        ("started", Some(run.run.id))
    );
    let audit = daemon.catalog.audit_entries(1).await.expect("audit");
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("alice", "trigger")
    );
}

/// The real daemon, a minute at a time through the nights around the
/// spring-forward change in Berlin, with a blackout night: one run a
/// night, at 02:30 local, or right after the jump; none on the blackout.
#[tokio::test]
async fn nights_across_a_dst_change_and_a_blackout_run_once_each_at_the_right_time() {
    use chrono_tz::Europe::Berlin;
    let dir = tempfile::tempdir().expect("tempdir");
    tree(
        dir.path(),
        "",
        EVERY_MINUTE,
        "[[steps]]\nname = \"hello\"\ncommand = \"true\"\n",
        ONE_HOST,
    );
    std::fs::write(
        dir.path().join("schedules/nightly.toml"),
        "[[schedule]]\nplaybook = \"work\"\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nwindow = \"nights\"\n\n\
         [windows.nights]\nstart = \"01:00\"\nend = \"05:00\"\nblackout = [\"2026-03-30\"]\n",
    )
    .expect("schedules");
    let night = |day: u32| {
        Berlin
            .with_ymd_and_hms(2026, 3, day, 0, 0, 0)
            .single()
            .expect("midnight")
            .to_utc()
    };
    let clock = ManualClock::new(night(28));
    let mut daemon = daemon(dir.path(), &clock).await;
    for day in 28..=31 {
        // From local midnight to 06:00, a tick a minute.
        for minute in 0..=360 {
            clock.set(night(day) + chrono::TimeDelta::minutes(minute));
            daemon.tick().await;
            settle(&mut daemon).await;
        }
    }
    let fires = daemon
        .catalog
        .fires(&daemon.entries[0].key, 100)
        .await
        .expect("fires");
    let mut started: Vec<String> = fires
        .iter()
        .map(|f| {
            assert_eq!(f.outcome, "started", "{f:?}");
            assert!(f.run_id.is_some(), "{f:?}");
            DateTime::parse_from_rfc3339(&f.fire)
                .expect("time")
                .with_timezone(&Berlin)
                .format("%m-%d %H:%M %Z")
                .to_string()
        })
        .collect();
    started.sort();
    assert_eq!(
        started,
        ["03-28 02:30 CET", "03-29 03:00 CEST", "03-31 02:30 CEST"]
    );
    let runs = daemon
        .catalog
        .runs(&nightshift_catalog::RunFilter::default())
        .await
        .expect("runs");
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == "ok"), "{runs:?}");
}
