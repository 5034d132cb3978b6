//! Tier 3: the daemon in real time on the Docker fleet. A schedule fires
//! every minute inside an open window; one host's own window is closed, so
//! it is deferred; SIGTERM mid-run stops the remote commands and records
//! interrupted jobs; the restarted daemon carries on.

use std::time::Duration;

use nightshift_testbed::Fleet;

use super::{DaemonTree, closed_window, playbook};

const STAMP: &str = "/tmp/nightshift-daemon-stamp";

fn fleet_tree(fleet: &Fleet, hosts: &[&str], closed: &str) -> DaemonTree {
    let m = fleet.manifest();
    let inventory: String = hosts
        .iter()
        .map(|name| {
            let host = fleet.host(name).expect("fleet host");
            let window = if *name == closed {
                "window = \"closed\"\n"
            } else {
                ""
            };
            format!(
                "[hosts.{name}]\naddress = \"{}\"\nuser = \"{}\"\nidentity = \"{}\"\ngroups = [\"fleet\"]\n{window}",
                host.address,
                m.user,
                m.identity.display()
            )
        })
        .collect();
    let tree = DaemonTree::new("[daemon]\ngrace = \"2s\"\n", &inventory);
    std::fs::copy(&m.known_hosts, tree.data().join("known_hosts")).expect("known_hosts");
    tree
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn every_minute_in_an_open_window_runs_on_the_fleet_defers_a_closed_host_and_survives_sigterm() {
    let fleet = Fleet::shared().expect("the shared fleet");
    let hosts: Vec<&str> = fleet
        .hosts()
        .iter()
        .take(3)
        .map(|h| h.name.as_str())
        .collect();
    let closed = hosts[2];
    for host in &hosts {
        fleet
            .ssh(host, &format!("rm -f {STAMP}"), Duration::from_secs(10))
            .expect("ssh");
    }
    let mut tree = fleet_tree(&fleet, &hosts, closed);
    tree.write(
        "playbooks/minute.toml",
        &playbook(
            "minute",
            &format!("[[steps]]\nname = \"stamp\"\ncommand = \"date -u +%s > {STAMP} && echo stamped $NIGHTSHIFT_HOST\"\n"),
        ),
    );
    tree.write(
        "playbooks/slow.toml",
        &playbook(
            "slow",
            "[[steps]]\nname = \"long\"\ncommand = \"sleep 117\"\n\n[[steps]]\nname = \"after\"\ncommand = \"true\"\n",
        ),
    );
    tree.write(
        "schedules/minute.toml",
        &format!(
            "[[schedule]]\nplaybook = \"minute\"\ncron = \"* * * * *\"\ntimezone = \"UTC\"\nwindow = \"always\"\n\n\
             [windows.always]\nstart = \"{}\"\nend = \"{}\"\ntimezone = \"UTC\"\n\n{}",
            (chrono::Utc::now() - chrono::TimeDelta::hours(6)).format("%H:00"),
            (chrono::Utc::now() + chrono::TimeDelta::hours(6)).format("%H:00"),
            closed_window("closed")
        ),
    );
    tree.start(&[]);
    tree.wait_until("a scheduled run has ended", |t| {
        t.runs()
            .iter()
            .any(|r| r.run.playbook == "minute" && r.run.status != "running")
    });
    let runs = tree.runs();
    let first = runs
        .iter()
        .rev()
        .find(|r| r.run.playbook == "minute")
        .expect("the scheduled run");
    assert_eq!(first.run.status, "ok", "{:?}", first.run);
    assert_eq!(first.run.trigger, "schedule");
    assert_eq!(first.run.window.as_deref(), Some("always"));
    let mut jobs: Vec<(&str, &str)> = first
        .jobs
        .iter()
        .map(|j| (j.host.as_str(), j.status.as_str()))
        .collect();
    jobs.sort_unstable();
    let mut expected = vec![(hosts[0], "ok"), (hosts[1], "ok"), (closed, "deferred")];
    expected.sort_unstable();
    assert_eq!(jobs, expected);
    let deferred = first.jobs.iter().find(|j| j.host == closed).expect("job");
    assert!(
        deferred
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("outside window closed; it opens next at")),
        "{:?}",
        deferred.detail
    );
    let stamped = |host: &str| {
        let out = fleet
            .ssh(
                host,
                &format!("test -s {STAMP} && echo yes || echo no"),
                Duration::from_secs(10),
            )
            .expect("ssh");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(stamped(hosts[0]), "yes");
    assert_eq!(stamped(hosts[1]), "yes");
    assert_eq!(
        stamped(closed),
        "no",
        "nothing touched the host outside its window"
    );

    // SIGTERM while a step runs on the fleet.
    assert!(
        tree.run(&["trigger", "slow", "--limit", hosts[0]])
            .status
            .success()
    );
    tree.wait_until("the long step runs on the host", |t| {
        t.step_status("long").as_deref() == Some("running")
    });
    tree.signal("TERM");
    assert!(
        tree.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        tree.log()
    );
    let runs = tree.runs();
    let slow = runs
        .iter()
        .find(|r| r.run.playbook == "slow")
        .expect("slow run");
    assert_eq!(slow.run.status, "interrupted");
    assert_eq!(
        (
            slow.jobs[0].status.as_str(),
            slow.jobs[0].error_kind.as_deref()
        ),
        ("interrupted", Some("stopped"))
    );
    assert_eq!(slow.jobs[0].steps[0].status, "interrupted");
    let left = fleet
        .ssh(
            hosts[0],
            "pgrep -f '[s]leep 117' || true",
            Duration::from_secs(10),
        )
        .expect("ssh");
    assert!(
        left.stdout.is_empty(),
        "the remote sleep was stopped: {}",
        String::from_utf8_lossy(&left.stdout)
    );

    // The restarted daemon carries on with the schedule.
    let before = tree
        .runs()
        .iter()
        .filter(|r| r.run.playbook == "minute" && r.run.status == "ok")
        .count();
    tree.start(&[]);
    tree.wait_until("the schedule runs again after the restart", |t| {
        t.runs()
            .iter()
            .filter(|r| r.run.playbook == "minute" && r.run.status == "ok")
            .count()
            > before
    });
    tree.signal("TERM");
    assert!(tree.wait_exit(Duration::from_secs(60)).success());
}
