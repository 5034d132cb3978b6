//! `nightshift runs`, `runs show`, `history` and `catalog` on a real
//! catalog file, seeded through the catalog's own API as a run would.

use std::path::Path;
use std::process::Output;

use chrono::{TimeZone, Utc};
use nightshift_catalog::{
    CATALOG_FILE, Catalog, JobStatus, NewRun, RunStatus, StepEnd, StepKind, StepStatus, Trigger,
};

use crate::common::{in_data_dir, json, stderr, stdout};

fn ns(data: &Path, args: &[&str]) -> Output {
    in_data_dir(data, args, &[])
}

/// A halted patch run: web1's update went through, web2's failed.
fn seed(data: &Path) {
    std::fs::create_dir_all(data).expect("data dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap();
        let c = Catalog::open(&data.join(CATALOG_FILE))
            .await
            .expect("catalog");
        let run = c
            .begin_run(&NewRun {
                playbook: "web-patch",
                trigger: Trigger::Schedule,
                operator: None,
                window: Some("nightly"),
                started: at(2, 0),
                cause: Default::default(),
            })
            .await
            .expect("run");
        for (host, ok) in [("web1", true), ("web2", false)] {
            let job = c
                .begin_job(run, host, None, 1, at(2, 0))
                .await
                .expect("job");
            let step = c
                .begin_step(job, 0, "patch", StepKind::Update, at(2, 0))
                .await
                .expect("step");
            let output = if ok {
                "3 upgraded\n"
            } else {
                "E: Unable to lock /var/lib/dpkg/lock\n"
            };
            let end = StepEnd {
                status: if ok {
                    StepStatus::Ok
                } else {
                    StepStatus::Failed
                },
                exit_code: Some(if ok { 0 } else { 100 }),
                signal: None,
                attempts: if ok { 1 } else { 3 },
                changed: ok,
                output: output.as_bytes(),
                finished: at(2, 4),
            };
            c.finish_step(step, &end).await.expect("finish step");
            let (status, kind) = if ok {
                (JobStatus::Ok, None)
            } else {
                (JobStatus::Failed, Some("exit"))
            };
            c.finish_job(job, status, kind, at(2, 4))
                .await
                .expect("finish job");
        }
        c.finish_run(
            run,
            RunStatus::Halted,
            Some("1 of 2 hosts failed (max_failures 0)"),
            at(2, 5),
        )
        .await
        .expect("finish run");
        c.close().await;
    });
}

#[test]
fn runs_lists_and_shows_a_run_per_host_and_step() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    seed(&data);
    let listed = json(&ns(&data, &["runs", "--json"]));
    assert_eq!(listed[0]["status"], "halted");
    assert_eq!(
        (
            listed[0]["hosts"].as_i64(),
            listed[0]["hosts_failed"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        json(&ns(
            &data,
            &["runs", "--failed", "--host", "web2", "--json"]
        ))
        .as_array()
        .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        json(&ns(&data, &["runs", "--since", "2026-11-21", "--json"]))
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        json(&ns(&data, &["runs", "--playbook", "db-backup", "--json"]))
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    let shown = ns(&data, &["runs", "show", "1"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    insta::assert_snapshot!(stdout(&shown));
    let detail = json(&ns(&data, &["runs", "show", "1", "--json"]));
    assert_eq!(detail["jobs"][1]["steps"][0]["exit_code"], 100);

    let missing = ns(&data, &["runs", "show", "99"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no run 99"),
        "{}",
        stderr(&missing)
    );
    let bad = ns(&data, &["runs", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("not a time: write"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn history_shows_runs_and_backups_and_rebuild_follows_the_store() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    seed(&data);
    let source = work.path().join("etc");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("hosts"), "127.0.0.1 localhost\n").expect("write");
    let backup = json(&ns(
        &data,
        &["backup", source.to_str().expect("utf-8"), "--json"],
    ));
    let id = backup["id"].as_str().expect("an id").to_string();
    let target = work.path().join("restored");
    let restore = ns(
        &data,
        &["restore", &id, "--to", target.to_str().expect("utf-8")],
    );
    assert!(restore.status.success(), "{}", stderr(&restore));

    let web2 = json(&ns(&data, &["history", "web2", "--json"]));
    assert_eq!(web2[0]["kind"], "run");
    assert_eq!(web2[0]["outcome"], "failed (exit)");
    let local = json(&ns(&data, &["history", "localhost", "--json"]));
    let kinds: Vec<_> = local
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&Some("backup")) && kinds.contains(&Some("restore")),
        "{local}"
    );
    let unknown = ns(&data, &["history", "nosuchhost"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no record of host"),
        "{}",
        stderr(&unknown)
    );

    let forget = ns(&data, &["forget", "--keep-last", "1", "--keep-tag", "none"]);
    assert!(forget.status.success(), "{}", stderr(&forget));
    let second = json(&ns(
        &data,
        &["backup", source.to_str().expect("utf-8"), "--json"],
    ));
    let forgot = ns(&data, &["forget", "--keep-last", "1"]);
    assert!(forgot.status.success(), "{}", stderr(&forgot));
    let rebuilt = ns(&data, &["catalog", "rebuild-snapshots"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert!(
        stdout(&rebuilt).contains("1 marked forgotten"),
        "{}",
        stdout(&rebuilt)
    );
    let local = json(&ns(&data, &["history", "localhost", "--json"]));
    let backups: Vec<_> = local
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "backup")
        .map(|e| {
            (
                e["detail"].as_str().map(|d| d[..8].to_string()),
                e["outcome"].as_str().map(str::to_string),
            )
        })
        .collect();
    let second = second["id"].as_str().expect("an id");
    assert_eq!(
        backups,
        [
            (Some(second[..8].to_string()), Some("ok".to_string())),
            (Some(id[..8].to_string()), Some("forgotten".to_string())),
        ]
    );
    let pruned = ns(&data, &["catalog", "prune", "--older-than", "1s"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
}
