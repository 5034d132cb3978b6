//! The catalog at a year of a 10,000-host fleet: 365 nightly runs, one job
//! per host (3.65 million jobs) of five steps (18.25 million steps), a
//! snapshot per host per night, 200 packages per host; and the evidence a
//! compliance report (`nightshift report compliance`) weighs: a restore
//! test per host per week, a fleet-wide store check per night, an upgrade
//! offered to every host every week with when it was applied (pending
//! updates and package changes), and the times hosts waited for a reboot.
//! Some of it is out of policy, as in a real fleet: 2 % of hosts whose
//! backups fail over the last 1 to 10 nights, 0.4 % unreachable for their
//! last 2 to 5 nights, 1 % of restore tests failing at random and 1 % of
//! hosts failing all of the last 3 weeks', 1 % of hosts holding a security
//! update for over 14 days, 1 % waiting over a week for a reboot (see
//! [`outcome`], [`updates`] and [`reboots`]).
//!
//! Measured: the latest state of every host (`Catalog::fleet_state`);
//! recording a 1,000-host run's results in one transaction
//! (`Catalog::record_jobs`, how the engine flushes a batch), and the cost
//! per host of recording call by call as steps happen; the file's size. The generated catalog is cached in `BENCH_DIR`
//! (default `/var/tmp/nightshift-bench-catalog`) and reused; it is written
//! with bulk multi-row inserts, since how fast it was made is not the
//! question. `cargo bench -p nightshift-catalog --bench catalog`.
//! `tests/bench/report` times the compliance report on the same catalog.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark prints its figures"
)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use nightshift_catalog::{
    CATALOG_FILE, Catalog, FinishedJob, FinishedStep, JobStatus, NewRun, RunStatus, StepEnd,
    StepKind, StepStatus, Trigger, stamp,
};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

const HOSTS: usize = 10_000;
const NIGHTS: usize = 365;
const STEPS: [(&str, &str); 5] = [
    ("refresh", "command"),
    ("patch", "update"),
    ("backup", "backup"),
    ("verify", "verify"),
    ("reboot", "reboot"),
];
const PACKAGES: usize = 200;
/// Rows per multi-row INSERT: SQLite allows 32,766 bound values.
const ROWS: usize = 2_000;
/// The last night, 2026-11-23 (02:00 UTC): a report as of a few hours
/// later (`--as-of 2026-11-23T06:00:00Z`) reads the whole year.
const LAST: usize = NIGHTS - 1;
/// Written in `BENCH_DIR` once the catalog is complete.
const MARKER: &str = "generated-v2";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 24, 2, 0, 0).unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/nightshift-bench-catalog".into()),
    );
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join(CATALOG_FILE);
    // v2 added the compliance evidence: a catalog of v1 is made again.
    let ready = dir.join(MARKER);
    if !ready.exists() {
        let _ = std::fs::remove_file(dir.join("generated"));
        for file in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{CATALOG_FILE}{file}")));
        }
        let started = Instant::now();
        generate(&path).await;
        std::fs::write(&ready, b"").expect("marker");
        eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());
    }
    let catalog = Catalog::open(&path).await.expect("open");
    // Warm once, then take the best of five: what a report sees on a
    // catalog in use.
    catalog.fleet_state().await.expect("fleet state");
    let mut best = f64::MAX;
    let mut hosts = 0;
    for _ in 0..5 {
        let t = Instant::now();
        hosts = catalog.fleet_state().await.expect("fleet state").len();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let batched = record_batched(&catalog).await;
    let streamed = record_run(&catalog, 100).await;
    catalog.close().await;
    let size = std::fs::metadata(&path).expect("size").len();
    println!("| figure | value |\n|---|---|");
    println!(
        "| hosts, jobs, steps | {HOSTS}, {}, {} |",
        HOSTS * NIGHTS,
        HOSTS * NIGHTS * STEPS.len()
    );
    println!("| latest state of all {hosts} hosts (`fleet_state`, best of 5) | {best:.3} s |");
    println!(
        "| recording a 1,000-host run's results, 5 steps each (`record_jobs`, one transaction) | {batched:.3} s |"
    );
    println!(
        "| recording as it happens, per call (`begin_job`, `begin_step`, `finish_step` x5, `finish_job`; 100 hosts) | {:.2} ms per host |",
        streamed * 10.0
    );
    println!(
        "| catalog file | {:.2} GiB |",
        size as f64 / (1u64 << 30) as f64
    );
}

const OUTPUT: &[u8] = b"Reading package lists...\n0 upgraded, 0 newly installed\n";

async fn bench_run(catalog: &Catalog, now: DateTime<Utc>) -> nightshift_catalog::RunId {
    catalog
        .begin_run(&NewRun {
            playbook: "bench",
            trigger: Trigger::Manual,
            operator: Some("bench"),
            window: None,
            started: now,
        })
        .await
        .expect("run")
}

fn step_ok(output: &[u8], finished: DateTime<Utc>) -> StepEnd<'_> {
    StepEnd {
        status: StepStatus::Ok,
        exit_code: Some(0),
        signal: None,
        attempts: 1,
        changed: false,
        output,
        finished,
    }
}

/// A 1,000-host run's results, flushed as the engine flushes a batch.
async fn record_batched(catalog: &Catalog) -> f64 {
    let now = Utc::now();
    let output = OUTPUT.repeat(4);
    let names: Vec<String> = (0..1_000).map(host_name).collect();
    let started = Instant::now();
    let run = bench_run(catalog, now).await;
    let jobs: Vec<FinishedJob<'_>> = names
        .iter()
        .map(|host| FinishedJob {
            host,
            batch: 1,
            status: JobStatus::Ok,
            error_kind: None,
            started: now,
            finished: now,
            steps: STEPS
                .iter()
                .map(|(name, kind)| FinishedStep {
                    name,
                    kind: StepKind::parse(kind).expect("a kind"),
                    started: now,
                    end: step_ok(&output, now),
                })
                .collect(),
        })
        .collect();
    catalog.record_jobs(run, &jobs).await.expect("record");
    catalog
        .finish_run(run, RunStatus::Ok, None, now)
        .await
        .expect("finish run");
    started.elapsed().as_secs_f64()
}

/// A run over `hosts` hosts, recorded call by call as steps happen.
async fn record_run(catalog: &Catalog, hosts: usize) -> f64 {
    let now = Utc::now();
    let started = Instant::now();
    let run = bench_run(catalog, now).await;
    let output = OUTPUT.repeat(4);
    for host in 0..hosts {
        let job = catalog
            .begin_job(run, &host_name(host), None, 1, now)
            .await
            .expect("job");
        for (position, (name, kind)) in STEPS.iter().enumerate() {
            let kind = StepKind::parse(kind).expect("a kind");
            let step = catalog
                .begin_step(job, position as u32, name, kind, now)
                .await
                .expect("step");
            let end = step_ok(&output, now);
            catalog.finish_step(step, &end).await.expect("finish step");
        }
        catalog
            .finish_job(job, JobStatus::Ok, None, now)
            .await
            .expect("finish job");
    }
    catalog
        .finish_run(run, RunStatus::Ok, None, now)
        .await
        .expect("finish run");
    started.elapsed().as_secs_f64()
}

fn host_name(n: usize) -> String {
    format!("host{n:05}")
}

fn night_at(night: usize) -> DateTime<Utc> {
    start() + Duration::days(night as i64)
}

fn job_id(night: usize, host: usize) -> i64 {
    (night * HOSTS + host) as i64 + 1
}

fn snapshot_id(night: usize, host: usize) -> String {
    format!("{:064x}", job_id(night, host))
}

/// A pseudo-random number for `parts`, the same every time (splitmix64).
fn mix(parts: &[usize]) -> u64 {
    parts.iter().fold(0x2545_F491_4F6C_DD1D_u64, |acc, &part| {
        let mut z = (acc ^ part as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// 2 % of hosts (every 50th) whose backups fail from 1 to 10 nights
/// before the end: the first night without one.
fn backups_stop(host: usize) -> Option<usize> {
    (host % 50 == 7).then(|| LAST - host / 50 % 10)
}

/// 0.4 % of hosts (every 250th) unreachable for their last 2 to 5 nights:
/// the first such night.
fn unreachable_from(host: usize) -> Option<usize> {
    (host % 250 == 11).then(|| LAST - 1 - host / 250 % 4)
}

fn reached(host: usize, night: usize) -> bool {
    unreachable_from(host).is_none_or(|u| night < u)
}

fn backed_up(host: usize, night: usize) -> bool {
    reached(host, night) && backups_stop(host).is_none_or(|s| night < s)
}

/// Whether the weekly restore test of `host` (on the nights `host % 7`)
/// passed that night; `None` when there was none (not its night, or no
/// backup to test). 1 % fail at random; 1 % of hosts (every 100th) have
/// failed every test of the last 3 weeks.
fn restore_test(host: usize, night: usize) -> Option<bool> {
    if night % 7 != host % 7 || !backed_up(host, night) {
        return None;
    }
    let stuck = host % 100 == 42 && night + 21 > LAST;
    Some(!stuck && !mix(&[1, host, night]).is_multiple_of(100))
}

/// How a host's nightly job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// The verify step's health check failed (1 job in 97).
    CheckFailed,
    RestoreTestFailed,
    BackupFailed,
    Unreachable,
}

fn outcome(host: usize, night: usize) -> Outcome {
    if !reached(host, night) {
        Outcome::Unreachable
    } else if !backed_up(host, night) {
        Outcome::BackupFailed
    } else if restore_test(host, night) == Some(false) {
        Outcome::RestoreTestFailed
    } else if (host + night).is_multiple_of(97) {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    }
}

impl Outcome {
    /// The job's status, error kind and detail.
    fn job(self, host: usize) -> (&'static str, Option<&'static str>, Option<String>) {
        match self {
            Self::Ok => ("ok", None, None),
            Self::CheckFailed => (
                "failed",
                Some("verify_failed"),
                Some("verify: `systemctl is-active nginx` exited 3".into()),
            ),
            Self::RestoreTestFailed => (
                "failed",
                Some("verify_failed"),
                Some("restore test: 2 of 1204 restored files differ from the snapshot".into()),
            ),
            Self::BackupFailed => (
                "failed",
                Some("backup_failed"),
                Some("backup: /var/www: read error: Input/output error (os error 5)".into()),
            ),
            Self::Unreachable => (
                "failed",
                Some("unreachable"),
                Some(format!(
                    "connect to {}:22: No route to host (os error 113)",
                    host_name(host)
                )),
            ),
        }
    }

    /// The step that failed: the ones before it ran, the ones after it
    /// were skipped.
    fn failed_step(self) -> Option<usize> {
        match self {
            Self::Ok => None,
            Self::CheckFailed | Self::RestoreTestFailed => Some(3),
            Self::BackupFailed => Some(2),
            Self::Unreachable => Some(0),
        }
    }
}

async fn generate(path: &Path) {
    // The schema comes from the real migrations.
    Catalog::open(path).await.expect("create").close().await;
    let url = format!("sqlite://{}", path.display());
    let pool = SqlitePool::connect(&url).await.expect("connect");
    for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = OFF"] {
        sqlx::query(pragma).execute(&pool).await.expect("pragma");
    }
    let first = stamp(start());
    insert(
        &pool,
        "INSERT INTO hosts (id, name, first_seen, last_seen) ",
        0..HOSTS,
        |b, h| {
            b.push_bind(h as i64 + 1)
                .push_bind(host_name(h))
                .push_bind(first.clone())
                .push_bind(first.clone());
        },
    )
    .await;
    for night in 0..NIGHTS {
        night_rows(&pool, night).await;
        if night.is_multiple_of(30) {
            eprintln!("night {night} of {NIGHTS}");
        }
    }
    let updates: Vec<Vec<Update>> = (0..HOSTS).map(updates).collect();
    packages(&pool, &updates).await;
    update_history(&pool, &updates).await;
    reboot_history(&pool, &updates).await;
    let last = night_at(LAST);
    let (last_at, last_job_base) = (stamp(last), ((NIGHTS - 1) * HOSTS) as i64);
    sqlx::query(
        "UPDATE hosts SET last_seen = ?1, last_job_status = 'ok', last_patch_at = ?1,
             last_job_id = ?2 + id, last_patch_job_id = ?2 + id, last_backup_at = ?1,
             last_backup_snapshot = printf('%064x', ?3 + id)",
    )
    .bind(&last_at)
    .bind(last_job_base)
    .bind(last_job_base)
    .execute(&pool)
    .await
    .expect("host summary");
    // The hosts whose last job did not go well.
    let mut tx = pool.begin().await.expect("begin");
    for host in 0..HOSTS {
        let outcome = outcome(host, LAST);
        if outcome == Outcome::Ok {
            continue;
        }
        let backup = (0..=LAST).rev().find(|&n| backed_up(host, n));
        sqlx::query(
            "UPDATE hosts SET last_job_status = 'failed', last_error_kind = ?2,
                 last_backup_at = ?3, last_backup_snapshot = ?4 WHERE id = ?1",
        )
        .bind(host as i64 + 1)
        .bind(outcome.job(host).1)
        .bind(backup.map(|n| stamp(night_at(n))))
        .bind(backup.map(|n| snapshot_id(n, host)))
        .execute(&mut *tx)
        .await
        .expect("failed host summary");
    }
    tx.commit().await.expect("commit");
    pool.close().await;
}

/// One night: the run, a job per host, five steps per job, a snapshot per
/// host backed up, the restore tests of the hosts whose night it is, and
/// the store check of the morning.
async fn night_rows(pool: &SqlitePool, night: usize) {
    let at = night_at(night);
    let (begin, end) = (stamp(at), stamp(at + Duration::minutes(20)));
    let run = night as i64 + 1;
    sqlx::query(
        "INSERT INTO runs (id, playbook, trigger, window, started, finished, status)
         VALUES (?, 'nightly', 'schedule', 'nightly', ?, ?, 'ok')",
    )
    .bind(run)
    .bind(&begin)
    .bind(&end)
    .execute(pool)
    .await
    .expect("run");
    let outcomes: Vec<Outcome> = (0..HOSTS).map(|h| outcome(h, night)).collect();
    insert(
        pool,
        "INSERT INTO jobs (id, run_id, host_id, batch, status, error_kind, detail, started, finished) ",
        0..HOSTS,
        |b, h| {
            let (status, error_kind, detail) = outcomes[h].job(h);
            b.push_bind(job_id(night, h))
                .push_bind(run)
                .push_bind(h as i64 + 1)
                .push_bind((h / 1000) as i64)
                .push_bind(status)
                .push_bind(error_kind)
                .push_bind(detail)
                .push_bind(begin.clone())
                .push_bind(end.clone());
        },
    )
    .await;
    insert(
        pool,
        "INSERT INTO steps (job_id, position, name, kind, status, exit_code, attempts, changed, started, finished, output_head) ",
        0..HOSTS * STEPS.len(),
        |b, i| {
            let (host, position) = (i / STEPS.len(), i % STEPS.len());
            let (name, kind) = STEPS[position];
            let outcome = outcomes[host];
            let ran = outcome != Outcome::Unreachable
                && outcome.failed_step().is_none_or(|f| position <= f);
            let (status, exit_code, output) = match outcome.failed_step() {
                _ if !ran => ("skipped", None, None),
                Some(f) if f == position => ("failed", Some(1), outcome.job(host).2),
                _ => ("ok", Some(0), Some("0 upgraded, 0 newly installed".to_string())),
            };
            b.push_bind(job_id(night, host))
                .push_bind(position as i64)
                .push_bind(name)
                .push_bind(kind)
                .push_bind(status)
                .push_bind(exit_code)
                .push_bind(i64::from(ran))
                .push_bind(ran && position == 1)
                .push_bind(ran.then(|| begin.clone()))
                .push_bind(ran.then(|| end.clone()))
                .push_bind(output);
        },
    )
    .await;
    insert(
        pool,
        "INSERT INTO snapshots (id, host, time, paths, tags, files, bytes_total, new_bytes_stored, run_id, job_id) ",
        (0..HOSTS).filter(|&h| backed_up(h, night)),
        |b, h| {
            b.push_bind(snapshot_id(night, h))
                .push_bind(host_name(h))
                .push_bind(end.clone())
                .push_bind(r#"["/etc","/var/www"]"#)
                .push_bind("[]")
                .push_bind(4_000)
                .push_bind(800_000_000)
                .push_bind(5_000_000)
                .push_bind(run)
                .push_bind(job_id(night, h));
        },
    )
    .await;
    // The verify step's restore test, during the job.
    let tested = stamp(at + Duration::minutes(15));
    insert(
        pool,
        "INSERT INTO verifications (at, kind, host, snapshot_id, outcome, figures, job_id) ",
        (0..HOSTS).filter(|&h| restore_test(h, night).is_some()),
        |b, h| {
            let ok = restore_test(h, night) == Some(true);
            let figures = if ok {
                r#"{"summary":"1204 files, 48.2 MiB restored to a scratch directory, all verified","error":null}"#
            } else {
                r#"{"summary":"1204 files, 48.2 MiB restored to a scratch directory","error":"2 of 1204 restored files differ from the snapshot"}"#
            };
            b.push_bind(tested.clone())
                .push_bind("restore_test")
                .push_bind(host_name(h))
                .push_bind(snapshot_id(night, h))
                .push_bind(if ok { "ok" } else { "failed" })
                .push_bind(figures)
                .push_bind(job_id(night, h));
        },
    )
    .await;
    // `nightshift store check` from cron at 05:00, of the whole store;
    // one night in 61 it finds a damaged pack.
    let ok = night % 61 != 30;
    sqlx::query(
        "INSERT INTO verifications (at, kind, host, snapshot_id, outcome, figures)
         VALUES (?, 'store_check', NULL, NULL, ?, ?)",
    )
    .bind(stamp(at + Duration::hours(3)))
    .bind(if ok { "ok" } else { "failed" })
    .bind(format!(
        r#"{{"snapshots":{},"packs":61480,"chunks":1880412,"packs_read":0,"bytes_read":0,"errors":{}}}"#,
        (night + 1) * HOSTS,
        u8::from(!ok)
    ))
    .execute(pool)
    .await
    .expect("store check");
}

/// An upgrade offered to a host: first seen by a night's refresh, applied
/// by a later night's patch step, or still pending at the end.
struct Update {
    host: usize,
    package: usize,
    security: bool,
    seen: usize,
    applied: Option<usize>,
}

impl Update {
    fn name(&self) -> String {
        format!("package{:03}", self.package)
    }

    fn version(&self) -> &'static str {
        if self.security {
            "1.0-1+deb12u1"
        } else {
            "1.0-2"
        }
    }

    fn since(&self) -> String {
        stamp(night_at(self.seen) + Duration::minutes(1))
    }

    fn applied_at(&self) -> Option<DateTime<Utc>> {
        self.applied.map(|n| night_at(n) + Duration::minutes(5))
    }
}

/// The package of a host's `k`th upgrade: a different one each time.
fn package_of(host: usize, k: usize) -> usize {
    (7 * host + 13 * k) % PACKAGES
}

/// Which of the host's upgrades is of `package`, if any (77 is the
/// inverse of 13 modulo 200).
fn update_of(host: usize, package: usize) -> Option<usize> {
    let k = (package + PACKAGES - 7 * host % PACKAGES) * 77 % PACKAGES;
    (7 * k + host % 7 <= LAST).then_some(k)
}

/// Every host is offered one upgrade a week (on the nights `host % 7`),
/// every 4th a security one. Security updates are applied the next night
/// (70 %), within a week (20 %), within two (8 %), or after 15 to 40
/// nights (2 %); other updates wait 7 to 28 nights, 1 % of them 35 to 60.
/// 1 % of hosts (every 100th) hold their security updates of the last 6
/// weeks, one of them seen more than 14 days before the end. An update
/// whose night comes when the host is unreachable stays pending.
fn updates(host: usize) -> Vec<Update> {
    (0..)
        .map(|k| (k, 7 * k + host % 7))
        .take_while(|&(_, seen)| seen <= LAST)
        .map(|(k, seen)| {
            let security = (k + host).is_multiple_of(4);
            let r = mix(&[2, host, k]) % 100;
            let spread = |n: u64| (mix(&[3, host, k]) % n) as usize;
            let delay = match (security, r) {
                (true, 0..70) => 1,
                (true, 70..90) => 2 + spread(6),
                (true, 90..98) => 8 + spread(6),
                (true, _) => 15 + spread(26),
                (false, 0) => 35 + spread(26),
                (false, _) => 7 + spread(22),
            };
            let held = security && host % 100 == 3 && seen + 42 >= LAST;
            let applied = Some(seen + delay).filter(|&a| !held && a <= LAST && reached(host, a));
            Update {
                host,
                package: package_of(host, k),
                security,
                seen,
                applied,
            }
        })
        .collect()
}

/// 200 packages per host, as the last night that reached it saw them:
/// the upgrades still pending (about 1 % of packages) with when they were
/// first seen.
async fn packages(pool: &SqlitePool, updates: &[Vec<Update>]) {
    insert(
        pool,
        "INSERT INTO packages (host_id, name, installed, upgradable, security, pending_since, seen) ",
        0..HOSTS * PACKAGES,
        |b, i| {
            let (host, package) = (i / PACKAGES, i % PACKAGES);
            let update = update_of(host, package).map(|k| &updates[host][k]);
            debug_assert!(update.is_none_or(|u| u.package == package));
            let pending = update.filter(|u| u.applied.is_none());
            let installed = match update {
                Some(u) if u.applied.is_some() => u.version(),
                _ => "1.0-1",
            };
            let last_seen = (0..=LAST).rev().find(|&n| reached(host, n)).unwrap_or(0);
            b.push_bind(host as i64 + 1)
                .push_bind(format!("package{package:03}"))
                .push_bind(installed)
                .push_bind(pending.map(Update::version))
                .push_bind(pending.is_some_and(|u| u.security))
                .push_bind(pending.map(Update::since))
                .push_bind(stamp(night_at(last_seen) + Duration::minutes(1)));
        },
    )
    .await;
}

/// Every upgrade's pending period, and the package change of each one
/// applied, as `record_packages` and `record_package_changes` keep them.
async fn update_history(pool: &SqlitePool, updates: &[Vec<Update>]) {
    let all: Vec<&Update> = updates.iter().flatten().collect();
    insert(
        pool,
        "INSERT INTO pending_updates (host_id, name, version, security, since, until, job_id) ",
        0..all.len(),
        |b, i| {
            let u = all[i];
            b.push_bind(u.host as i64 + 1)
                .push_bind(u.name())
                .push_bind(u.version())
                .push_bind(u.security)
                .push_bind(u.since())
                .push_bind(u.applied_at().map(stamp))
                .push_bind(u.applied.map(|n| job_id(n, u.host)));
        },
    )
    .await;
    let applied: Vec<&Update> = all.into_iter().filter(|u| u.applied.is_some()).collect();
    insert(
        pool,
        "INSERT INTO package_changes (job_id, host_id, name, from_version, to_version, security, pending_since, at) ",
        0..applied.len(),
        |b, i| {
            let u = applied[i];
            b.push_bind(u.applied.map(|n| job_id(n, u.host)))
                .push_bind(u.host as i64 + 1)
                .push_bind(u.name())
                .push_bind("1.0-1")
                .push_bind(u.version())
                .push_bind(u.security)
                .push_bind(u.since())
                .push_bind(u.applied_at().map(stamp));
        },
    )
    .await;
}

/// A time a host needed a reboot.
struct Reboot {
    host: usize,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    reason: String,
}

/// A third of the security updates (those of every third package: "the
/// kernel") need a reboot from when they are applied until a reboot 1 to
/// 6 nights later; one not reached by the end is still pending. 1 % of
/// hosts (every 100th) have needed one since 8 to 17 nights before the
/// end.
fn reboots(host: usize, updates: &[Update]) -> Vec<Reboot> {
    let mut periods: Vec<Reboot> = updates
        .iter()
        .filter(|u| u.security && u.package.is_multiple_of(3))
        .filter_map(|u| {
            let applied = u.applied?;
            let reboot = applied + 1 + (mix(&[4, host, applied]) % 6) as usize;
            Some(Reboot {
                host,
                since: u.applied_at()?,
                until: (reboot <= LAST && reached(host, reboot))
                    .then(|| night_at(reboot) + Duration::minutes(18)),
                reason: format!("/var/run/reboot-required ({})", u.name()),
            })
        })
        .collect();
    // One period at a time, as `set_reboot_required` keeps them: an
    // update that needs a reboot while one is pending joins that period.
    periods.sort_by_key(|p| p.since);
    periods.dedup_by(|later, earlier| {
        let overlaps = earlier.until.is_none_or(|u| u >= later.since);
        if overlaps {
            earlier.until = earlier.until.zip(later.until).map(|(a, b)| a.max(b));
        }
        overlaps
    });
    if host % 100 == 61 {
        let since = night_at(LAST - 8 - host / 100 % 10) + Duration::minutes(5);
        periods.retain(|p| p.until.is_some_and(|u| u < since));
        periods.push(Reboot {
            host,
            since,
            until: None,
            reason: "running kernel 6.1.0-26-amd64 is older than installed 6.1.0-28-amd64".into(),
        });
    }
    periods
}

/// Every reboot period, and `reboot_required` for the hosts that need
/// one at the end.
async fn reboot_history(pool: &SqlitePool, updates: &[Vec<Update>]) {
    let all: Vec<Reboot> = updates
        .iter()
        .enumerate()
        .flat_map(|(host, u)| reboots(host, u))
        .collect();
    insert(
        pool,
        "INSERT INTO reboot_periods (host_id, since, until, reason) ",
        0..all.len(),
        |b, i| {
            let r = &all[i];
            b.push_bind(r.host as i64 + 1)
                .push_bind(stamp(r.since))
                .push_bind(r.until.map(stamp))
                .push_bind(r.reason.clone());
        },
    )
    .await;
    let open: Vec<&Reboot> = all.iter().filter(|r| r.until.is_none()).collect();
    insert(
        pool,
        "INSERT INTO reboot_required (host_id, since, reason) ",
        0..open.len(),
        |b, i| {
            let r = open[i];
            b.push_bind(r.host as i64 + 1)
                .push_bind(stamp(r.since))
                .push_bind(r.reason.clone());
        },
    )
    .await;
}

/// Inserts one row per item of `items`, `ROWS` rows per statement, in one
/// transaction.
async fn insert<I: Iterator<Item = usize>>(
    pool: &SqlitePool,
    head: &str,
    items: I,
    mut row: impl FnMut(&mut sqlx::query_builder::Separated<'_, '_, Sqlite, &'static str>, usize),
) {
    let mut tx = pool.begin().await.expect("begin");
    let items: Vec<usize> = items.collect();
    for chunk in items.chunks(ROWS) {
        let mut builder = QueryBuilder::<Sqlite>::new(head);
        builder.push_values(chunk.iter().copied(), |mut b, i| row(&mut b, i));
        builder.build().execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
}
