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
//! [`generate::outcome`], [`generate::updates`] and [`generate::reboots`]).
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

mod generate;

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use nightshift_catalog::{
    CATALOG_FILE, Catalog, FinishedJob, FinishedStep, JobStatus, NewRun, RunStatus, StepEnd,
    StepKind, StepStatus, Trigger,
};

use generate::generate;

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
            cause: Default::default(),
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
