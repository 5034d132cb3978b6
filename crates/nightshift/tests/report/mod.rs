//! `nightshift report compliance` and `report host` on a fixed catalog,
//! seeded through the catalog's own API at fixed times, with golden
//! output for every text format.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use nightshift_catalog::{
    CATALOG_FILE, Catalog, FinishedJob, FinishedStep, JobId, JobStatus, NewRun, PackageChange,
    PackageState, SnapshotRecord, StepEnd, StepKind, StepStatus, Trigger,
};

use crate::common::{in_data_dir, stderr, stdout};

const INVENTORY: &str = r#"
[hosts.web1]
groups = ["web"]
[hosts.web2]
groups = ["web"]
[hosts.db1]
groups = ["db"]
[hosts.legacy1]
groups = ["legacy"]
[hosts.new1]
groups = ["web"]
[hosts.late1]
groups = ["db"]
"#;

const PLAYBOOK: &str = r#"
name = "nightly"
targets = ["group:web", "group:db"]

[[steps]]
name = "patch"
update = {}
"#;

const SCHEDULES: &str = r#"
[windows.nights]
days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
start = "01:00"
end = "05:00"
timezone = "UTC"

[[schedule]]
playbook = "nightly"
cron = "0 2 * * *"
timezone = "UTC"
window = "nights"
"#;

const CONFIG: &str = r#"inventory = "inventory.toml"

[policy]
backup_rpo = "26h"

[[exception]]
group = "legacy"
policies = ["scheduled"]
reason = "decommissioned in Q3; kept for the ledger"
expires = 2026-12-31

[[exception]]
host = "db1"
policies = ["backup_rpo"]
reason = "migration window"
expires = 2026-06-01
"#;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, day, hour, 0, 0).unwrap()
}

fn may(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 2, 0, 0).unwrap()
}

/// A plan tree with its data dir.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("nightshift.toml"), CONFIG).expect("config");
    std::fs::write(p.join("inventory.toml"), INVENTORY).expect("inventory");
    for sub in ["playbooks", "schedules", "data"] {
        std::fs::create_dir_all(p.join(sub)).expect("mkdir");
    }
    std::fs::write(p.join("playbooks/nightly.toml"), PLAYBOOK).expect("playbook");
    std::fs::write(p.join("schedules/nightly.toml"), SCHEDULES).expect("schedule");
    dir
}

struct Seed<'a> {
    c: &'a Catalog,
}

impl Seed<'_> {
    /// One nightly job on `host` at 02:00 on `when`'s day, with an update
    /// and a backup step; returns the job and the run.
    async fn night(
        &self,
        host: &str,
        when: DateTime<Utc>,
        status: JobStatus,
        error: Option<&str>,
    ) -> (JobId, i64) {
        let run = self
            .c
            .begin_run(&NewRun {
                playbook: "nightly",
                trigger: Trigger::Schedule,
                operator: None,
                window: Some("nights"),
                started: when,
                cause: Default::default(),
            })
            .await
            .expect("run");
        let ok = status == JobStatus::Ok;
        let end = StepEnd {
            status: if ok {
                StepStatus::Ok
            } else {
                StepStatus::Failed
            },
            exit_code: Some(if ok { 0 } else { 255 }),
            signal: None,
            attempts: 1,
            changed: false,
            output: b"",
            finished: when + Duration::minutes(20),
        };
        let step = |name, kind| FinishedStep {
            name,
            kind,
            started: when,
            end: end.clone(),
        };
        let jobs = self
            .c
            .record_jobs(
                run,
                &[FinishedJob {
                    host,
                    batch: 1,
                    status,
                    error_kind: error,
                    started: when,
                    finished: when + Duration::minutes(20),
                    steps: vec![
                        step("patch", StepKind::Update),
                        step("backup", StepKind::Backup),
                    ],
                }],
            )
            .await
            .expect("jobs");
        let status = if ok {
            nightshift_catalog::RunStatus::Ok
        } else {
            nightshift_catalog::RunStatus::Failed
        };
        self.c
            .finish_run(run, status, None, when + Duration::minutes(21))
            .await
            .expect("finish");
        (jobs[0], run.0)
    }

    async fn snapshot(&self, host: &str, job: JobId, when: DateTime<Utc>) {
        let id = format!("{:064x}", NEXT_SNAPSHOT.fetch_add(1, Ordering::Relaxed));
        self.c
            .record_snapshot(&SnapshotRecord {
                id,
                host: host.to_string(),
                time: when + Duration::minutes(15),
                paths: vec!["/etc".into()],
                tags: vec![],
                parent: None,
                files: 10,
                bytes_total: 1000,
                new_bytes_stored: 10,
                job: Some(job),
                damaged_paths: None,
            })
            .await
            .expect("snapshot");
    }

    async fn verified(&self, kind: &str, host: &str, job: JobId, when: DateTime<Utc>) {
        self.c
            .record_verification(&nightshift_catalog::Verification {
                kind,
                host: Some(host),
                snapshot: None,
                ok: true,
                figures: &serde_json::json!({}),
                at: when,
                job: Some(job),
            })
            .await
            .expect("verification");
    }

    async fn pending(&self, host: &str, packages: &[(&str, bool)], when: DateTime<Utc>) {
        let states: Vec<PackageState> = packages
            .iter()
            .map(|(name, security)| PackageState {
                name: name.to_string(),
                installed: Some("1.0-1".into()),
                upgradable: Some("1.0-2".into()),
                security: *security,
            })
            .collect();
        self.c
            .record_packages(host, &states, when)
            .await
            .expect("packages");
    }
}

/// web1: everything in order. web2: a security update pending 21 days, a
/// reboot pending 9 days, an old restore test. db1: unreachable for two
/// nights, so its backup is old (and its exception has expired). legacy1:
/// on no schedule, exempt. new1: never reached.
fn seed(data: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let c = Catalog::open(&data.join(CATALOG_FILE))
            .await
            .expect("catalog");
        let s = Seed { c: &c };
        for day in 1..=10 {
            let (job, _) = s.night("web1", at(day, 2), JobStatus::Ok, None).await;
            s.snapshot("web1", job, at(day, 2)).await;
            if day == 3 {
                s.pending("web1", &[("openssl", true)], may(31)).await;
                let change = PackageChange {
                    name: "openssl".into(),
                    from: Some("1.0-1".into()),
                    to: Some("1.0-2".into()),
                    security: true,
                };
                c.record_package_changes(job, "web1", &[change], at(day, 2))
                    .await
                    .expect("change");
            }
            if day == 8 {
                s.verified("restore_test", "web1", job, at(day, 3)).await;
            }
            if day == 9 {
                s.verified("store_check", "web1", job, at(day, 3)).await;
            }
        }
        s.pending("web1", &[("curl", true)], at(5, 2)).await;
        s.pending("web1", &[("curl", true)], at(10, 2)).await;

        let (job, _) = s.night("web2", may(25), JobStatus::Ok, None).await;
        s.verified("restore_test", "web2", job, may(25)).await;
        s.pending("web2", &[("libc6", true), ("vim", false)], may(20))
            .await;
        let (job, _) = s.night("web2", at(10, 2), JobStatus::Ok, None).await;
        s.snapshot("web2", job, at(10, 2)).await;
        s.verified("store_check", "web2", job, at(10, 3)).await;
        s.pending("web2", &[("libc6", true), ("vim", false)], at(10, 2))
            .await;
        c.set_reboot_required("web2", Some("linux-image-6.1 upgraded"), at(1, 2))
            .await
            .expect("reboot");

        for day in 1..=8 {
            let (job, _) = s.night("db1", at(day, 2), JobStatus::Ok, None).await;
            s.snapshot("db1", job, at(day, 2)).await;
            if day == 7 {
                s.verified("restore_test", "db1", job, at(day, 3)).await;
                s.verified("store_check", "db1", job, at(day, 3)).await;
            }
        }
        for day in 9..=10 {
            s.night("db1", at(day, 2), JobStatus::Failed, Some("unreachable"))
                .await;
        }

        let (job, _) = s.night("legacy1", at(10, 2), JobStatus::Ok, None).await;
        s.snapshot("legacy1", job, at(10, 2)).await;
        s.verified("restore_test", "legacy1", job, at(10, 3)).await;
        s.verified("store_check", "legacy1", job, at(10, 3)).await;
        // late1 joined the fleet after the report's moment.
        s.night("late1", at(20, 2), JobStatus::Ok, None).await;
        c.close().await;
    });
}

fn report(dir: &Path, args: &[&str]) -> std::process::Output {
    let config = dir.join("nightshift.toml");
    let mut argv = vec!["--config", config.to_str().expect("utf-8"), "report"];
    argv.extend(args);
    in_data_dir(&dir.join("data"), &argv, &[])
}

static NEXT_SNAPSHOT: AtomicU64 = AtomicU64::new(1);

const AS_OF: &str = "2026-06-10T06:00:00Z";

#[test]
fn the_compliance_report_reads_the_same_in_every_format() {
    let dir = tree();
    seed(&dir.path().join("data"));
    let table = report(dir.path(), &["compliance", "--as-of", AS_OF]);
    assert!(table.status.success(), "{}", stderr(&table));
    insta::assert_snapshot!("compliance_table", stdout(&table));

    let csv = report(
        dir.path(),
        &["compliance", "--as-of", AS_OF, "--format", "csv"],
    );
    assert!(csv.status.success(), "{}", stderr(&csv));
    insta::assert_snapshot!("compliance_csv", stdout(&csv));

    let json = report(
        dir.path(),
        &["compliance", "--as-of", AS_OF, "--format", "json"],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    insta::assert_json_snapshot!("compliance_json", value);

    let host = report(dir.path(), &["host", "web2", "--as-of", AS_OF]);
    assert!(host.status.success(), "{}", stderr(&host));
    insta::assert_snapshot!("host_web2", stdout(&host));
}

#[test]
fn a_group_and_an_earlier_moment_change_what_the_report_says() {
    let dir = tree();
    seed(&dir.path().join("data"));
    let web = report(
        dir.path(),
        &[
            "compliance",
            "--as-of",
            AS_OF,
            "--group",
            "web",
            "--format",
            "json",
        ],
    );
    let value: serde_json::Value = serde_json::from_slice(&web.stdout).expect("JSON");
    let hosts: Vec<&str> = value["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(hosts, ["new1", "web1", "web2"]);

    // A host the catalog first saw after the moment was not in the fleet
    // then; later it is.
    let db = |when: &str| -> Vec<String> {
        let out = report(
            dir.path(),
            &[
                "compliance",
                "--as-of",
                when,
                "--group",
                "db",
                "--format",
                "json",
            ],
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        value["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .filter_map(|h| h["host"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(db(AS_OF), ["db1"]);
    assert_eq!(db("2026-06-21T00:00:00Z"), ["db1", "late1"]);

    // For scripts: the exit status says whether every host complies.
    let strict = ["compliance", "--as-of", AS_OF, "--fail-if-not-compliant"];
    assert_eq!(report(dir.path(), &strict).status.code(), Some(1));
    let legacy = [&strict[..], &["--group", "legacy"]].concat();
    let out = report(dir.path(), &legacy);
    assert_eq!(
        out.status.code(),
        Some(0),
        "legacy1 is compliant or exempt: {}",
        stdout(&out)
    );

    // On the evening of 8 June db1 had been backed up that night.
    let earlier = report(
        dir.path(),
        &[
            "compliance",
            "--as-of",
            "2026-06-08T20:00:00Z",
            "--format",
            "csv",
        ],
    );
    let text = stdout(&earlier);
    let db1 = text
        .lines()
        .find(|l| l.contains(",db1,backup_rpo,"))
        .expect("db1's backup row");
    assert!(db1.contains(",compliant,"), "{db1}");
    let now = stdout(&report(
        dir.path(),
        &["compliance", "--as-of", AS_OF, "--format", "csv"],
    ));
    let db1 = now
        .lines()
        .find(|l| l.contains(",db1,backup_rpo,"))
        .expect("db1's backup row");
    assert!(db1.contains(",non_compliant,"), "{db1}");
    assert!(db1.contains("failed: unreachable"), "{db1}");
}

#[test]
fn an_exception_for_a_host_the_inventory_lacks_names_its_place() {
    let dir = tree();
    seed(&dir.path().join("data"));
    let config = CONFIG.replace("host = \"db1\"", "host = \"db9\"");
    std::fs::write(dir.path().join("nightshift.toml"), config).expect("config");
    // An exception is part of the plan: a wrong one refuses the report
    // as any problem in the plan refuses a command.
    let out = report(dir.path(), &["compliance"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out).replace(&dir.path().display().to_string(), "TREE");
    insta::assert_snapshot!("unknown_exception_host", text);

    // `check` finds it too, with the rest of the plan.
    let config = dir.path().join("nightshift.toml");
    let check = in_data_dir(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8"), "check"],
        &[],
    );
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    let said = stderr(&check);
    assert!(
        said.contains("exception for host `db9`, which the inventory does not have")
            && said.contains("nightshift.toml:13:8"),
        "{said}"
    );
}

/// Tier 3: a real fleet patched, backed up and restore-tested, then a host
/// stopped and the report read three days on.
mod fleet {
    use chrono::{Duration, Utc};
    use nightshift_testbed::Fleet;

    use crate::common::stderr;

    const PLAYBOOK: &str = r#"
name = "maintenance"
targets = ["group:fleet"]
become = true

[[steps]]
name = "patch"
update = {}

[[steps]]
name = "etc"
backup = { paths = ["/etc"] }

[[steps]]
name = "restore test"
verify = { restore_test = true }

[[steps]]
name = "backup check"
verify = { backup_check = true }
"#;

    const SCHEDULE: &str = r#"
[[schedule]]
playbook = "maintenance"
cron = "0 2 * * *"
timezone = "UTC"
window = "nights"

[windows.nights]
days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
start = "01:00"
end = "05:00"
timezone = "UTC"
"#;

    fn checks(report: &serde_json::Value, host: &str) -> Vec<(String, String, String)> {
        report["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == host)
            .expect("the host")["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| {
                let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (text("policy"), text("status"), text("reason"))
            })
            .collect()
    }

    #[test]
    #[ignore = "fleet tier: run through tests/run"]
    fn a_maintained_fleet_complies_and_a_stopped_host_falls_out_on_backup_age() {
        let fleet = Fleet::up("report", 2).expect("private fleet");
        let tree = crate::run::fleet::tree(&fleet, PLAYBOOK);
        let dir = tree.dir.path();
        std::fs::rename(
            dir.join("playbooks/test.toml"),
            dir.join("playbooks/maintenance.toml"),
        )
        .expect("rename");
        std::fs::write(dir.join("schedules/nightly.toml"), SCHEDULE).expect("schedule");
        let out = tree.run(&["run", "maintenance"]);
        assert!(out.status.success(), "{}", stderr(&out));

        let out = tree.run(&["report", "compliance", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let now: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(now["overall"]["compliant"], 2, "{now:#}");
        assert_eq!(now["overall"]["percent"], 100.0);

        fleet.stop("host2").expect("stop host2");
        let again = tree.run(&["run", "maintenance"]);
        assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));

        let later = (Utc::now() + Duration::days(3)).to_rfc3339();
        let out = tree.run(&[
            "report",
            "compliance",
            "--format",
            "json",
            "--as-of",
            &later,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let host2 = checks(&report, "host2");
        let backup = host2
            .iter()
            .find(|(p, _, _)| p == "backup_rpo")
            .expect("backup_rpo");
        assert_eq!(backup.1, "non_compliant", "{backup:?}");
        assert!(backup.2.starts_with("last good backup 3 d"), "{backup:?}");
        assert!(
            backup.2.contains("failed: "),
            "the failed run is named: {backup:?}"
        );
        let seen = host2
            .iter()
            .find(|(p, _, _)| p == "last_seen")
            .expect("last_seen");
        assert_eq!(seen.1, "non_compliant", "{seen:?}");
        // host1 ran fine on the second night: its backup is as old as the
        // run, and no failure is blamed.
        let host1 = checks(&report, "host1");
        let backup1 = host1
            .iter()
            .find(|(p, _, _)| p == "backup_rpo")
            .expect("backup_rpo");
        assert!(!backup1.2.contains("failed"), "{backup1:?}");
        let table = tree.run(&["report", "compliance", "--as-of", &later]);
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(text.contains("NOT COMPLIANT"), "{text}");
        assert!(text.contains("host2"), "{text}");
    }
}
