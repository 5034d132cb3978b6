//! The catalog at a year of a 10,000-host fleet: 365 nightly runs, one job
//! per host (3.65 million jobs) of five steps (18.25 million steps), a
//! snapshot per host per night, 200 packages per host.
//!
//! Measured: the latest state of every host (`Catalog::fleet_state`);
//! recording a 1,000-host run's results in one transaction
//! (`Catalog::record_jobs`, how the engine flushes a batch), and the cost
//! per host of recording call by call as steps happen; the file's size. The generated catalog is cached in `BENCH_DIR`
//! (default `/var/tmp/nightshift-bench-catalog`) and reused; it is written
//! with bulk multi-row inserts, since how fast it was made is not the
//! question. `cargo bench -p nightshift-catalog --bench catalog`.

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
    let ready = dir.join("generated");
    if !ready.exists() {
        let _ = std::fs::remove_file(&path);
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
    packages(&pool).await;
    let last = start() + Duration::days(NIGHTS as i64 - 1);
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
    pool.close().await;
}

/// One night: the run, a job per host, five steps per job, a snapshot.
async fn night_rows(pool: &SqlitePool, night: usize) {
    let at = start() + Duration::days(night as i64);
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
    let base = (night * HOSTS) as i64;
    insert(
        pool,
        "INSERT INTO jobs (id, run_id, host_id, batch, status, started, finished) ",
        0..HOSTS,
        |b, h| {
            let failed = (h + night).is_multiple_of(97);
            b.push_bind(base + h as i64 + 1)
                .push_bind(run)
                .push_bind(h as i64 + 1)
                .push_bind((h / 1000) as i64)
                .push_bind(if failed { "failed" } else { "ok" })
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
            b.push_bind(base + host as i64 + 1)
                .push_bind(position as i64)
                .push_bind(name)
                .push_bind(kind)
                .push_bind("ok")
                .push_bind(0)
                .push_bind(1)
                .push_bind(position == 1)
                .push_bind(begin.clone())
                .push_bind(end.clone())
                .push_bind("0 upgraded, 0 newly installed");
        },
    )
    .await;
    insert(
        pool,
        "INSERT INTO snapshots (id, host, time, paths, tags, files, bytes_total, new_bytes_stored, run_id, job_id) ",
        0..HOSTS,
        |b, h| {
            let job = base + h as i64 + 1;
            b.push_bind(format!("{job:064x}"))
                .push_bind(host_name(h))
                .push_bind(end.clone())
                .push_bind(r#"["/etc","/var/www"]"#)
                .push_bind("[]")
                .push_bind(4_000)
                .push_bind(800_000_000)
                .push_bind(5_000_000)
                .push_bind(run)
                .push_bind(job);
        },
    )
    .await;
}

/// 200 packages per host; every 50th has a pending upgrade, every 4th of
/// those a security one.
async fn packages(pool: &SqlitePool) {
    let seen = stamp(start() + Duration::days(NIGHTS as i64 - 1));
    let pending = stamp(start() + Duration::days(NIGHTS as i64 - 10));
    insert(
        pool,
        "INSERT INTO packages (host_id, name, installed, upgradable, security, pending_since, seen) ",
        0..HOSTS * PACKAGES,
        |b, i| {
            let (host, package) = (i / PACKAGES, i % PACKAGES);
            let upgradable = (package + host).is_multiple_of(50);
            b.push_bind(host as i64 + 1)
                .push_bind(format!("package{package:03}"))
                .push_bind("1.0-1")
                .push_bind(upgradable.then_some("1.0-2"))
                .push_bind(upgradable && (package + host).is_multiple_of(200))
                .push_bind(upgradable.then(|| pending.clone()))
                .push_bind(seen.clone());
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
