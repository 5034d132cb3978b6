//! Writing the year of catalog the benchmark reads, in bulk multi-row
//! inserts: each night's run, jobs, steps, snapshots and checks, who fails
//! when, and the compliance evidence (updates, package changes, reboots).

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use nightshift_catalog::{Catalog, stamp};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::{HOSTS, LAST, NIGHTS, PACKAGES, ROWS, STEPS, host_name, start};

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

pub(super) async fn generate(path: &Path) {
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
    mut row: impl FnMut(&mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, usize),
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
