//! `nightshift report compliance` and `nightshift report host`: read the
//! catalog's evidence at the moment asked about (and weekly before it, for
//! the trend), judge it against `[policy]` and the exceptions, render.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use nightshift_catalog::{CATALOG_FILE, Catalog};
use nightshift_plan::Plan;
use nightshift_report::{Evidence, Fleet, Report};

use crate::cli::{ComplianceArgs, HostReportArgs, ReportFormat};
use crate::settings::Settings;

/// Weekly points of the trend, the last being the report's moment.
const TREND_WEEKS: i64 = 12;

/// Moments read at once at most: the catalog has this many readers.
const PARALLEL_MOMENTS: usize = 4;

pub fn compliance(settings: &Settings, args: &ComplianceArgs) -> anyhow::Result<ExitCode> {
    let as_of = moment(args.as_of.as_deref())?;
    let report = gather(settings, args.group.as_deref(), as_of, None)?;
    let text = match args.format {
        ReportFormat::Table => nightshift_report::table(&report, &shown),
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => {
            let mut out = Vec::new();
            nightshift_report::csv(&report, &mut out)?;
            String::from_utf8(out).context("the CSV is not UTF-8")?
        }
        ReportFormat::Html => nightshift_report::html(&report),
    };
    match &args.out {
        Some(path) => {
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "compliance report ({} hosts, {:.1}% compliant) written to {}",
                report.hosts_total,
                report.overall.percent,
                path.display()
            );
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    let failing = report.overall.compliant < report.overall.total;
    Ok(if args.fail_if_not_compliant && failing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn host(settings: &Settings, args: &HostReportArgs) -> anyhow::Result<ExitCode> {
    let as_of = moment(args.as_of.as_deref())?;
    let report = gather(settings, None, as_of, Some(&args.host))?;
    let Some(row) = report.hosts.iter().find(|h| h.host == args.host) else {
        anyhow::bail!(
            "{} is not in the inventory; `nightshift hosts list` shows the hosts there are",
            args.host
        );
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(row)?);
    } else {
        print!("{}", nightshift_report::host_table(row, &report, &shown));
    }
    Ok(ExitCode::SUCCESS)
}

/// The report's moment: now, a date (its end, local time), or a local or
/// RFC 3339 time.
fn moment(text: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    let Some(text) = text else {
        return Ok(Utc::now());
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return in_range(t.to_utc(), text);
    }
    let local = |t: NaiveDateTime| Local.from_local_datetime(&t).earliest().map(|t| t.to_utc());
    let moment = if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        // The end of the day: its last millisecond, as finely as the
        // catalog records.
        day.succ_opt()
            .and_then(|next| local(next.and_time(chrono::NaiveTime::MIN)))
            .map(|t| t - Duration::milliseconds(1))
    } else {
        ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .and_then(local)
    };
    let moment = moment.with_context(|| {
        format!(
            "--as-of {text}: write a date (2026-11-20), a local time (2026-11-20T03:00) or RFC 3339"
        )
    })?;
    in_range(moment, text)
}

/// A moment the catalog can hold: years 1 to 9999, so its text sorts.
fn in_range(at: DateTime<Utc>, text: &str) -> anyhow::Result<DateTime<Utc>> {
    use chrono::Datelike as _;
    anyhow::ensure!(
        (1..=9999).contains(&at.year()),
        "--as-of {text}: a year from 1 to 9999, please"
    );
    Ok(at)
}

/// How times read in the table: the local zone, to the minute.
fn shown(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn gather(
    settings: &Settings,
    group: Option<&str>,
    as_of: DateTime<Utc>,
    only: Option<&str>,
) -> anyhow::Result<Report> {
    let plan = settings.plan()?;
    let mut fleet = fleet(&plan, group)?;
    if let Some(host) = only {
        fleet.hosts.retain(|h| h == host);
    }
    let path = settings.data_dir.join(CATALOG_FILE);
    anyhow::ensure!(
        path.is_file(),
        "there is no catalog at {} yet: a report needs the record of runs; run a playbook first",
        path.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let catalog = Catalog::open(&path).await?;
        let mut evidence = evidence(&catalog, as_of, only.is_none()).await?;
        let config = &settings.config;
        // Runs and reasons are read for the hosts that need explaining
        // (or the one host asked about), not for every compliant one.
        let explain = match only {
            Some(host) => vec![host.to_string()],
            None => {
                nightshift_report::to_explain(&fleet, &config.policy, &config.exceptions, &evidence)
            }
        };
        evidence.trails = catalog.host_trails(&explain, as_of).await?;
        catalog.close().await;
        Ok(nightshift_report::build(
            &fleet,
            &config.policy,
            &config.exceptions,
            &evidence,
        ))
    })
}

/// What the catalog says at `as_of`, and with `trend`, at each week
/// before it.
async fn evidence(
    catalog: &Catalog,
    as_of: DateTime<Utc>,
    trend: bool,
) -> anyhow::Result<Evidence> {
    let period_start = as_of - Duration::weeks(TREND_WEEKS - 1);
    let weeks: Vec<DateTime<Utc>> = if trend {
        (1..TREND_WEEKS)
            .rev()
            .map(|w| as_of - Duration::weeks(w))
            .collect()
    } else {
        Vec::new()
    };
    // The moments are independent reads: the catalog's readers take them
    // side by side.
    let (now, earlier, pending, applied, known) = tokio::try_join!(
        catalog.host_facts(as_of),
        weeks_facts(catalog, &weeks),
        catalog.pending_updates(as_of),
        catalog.security_updates_applied(period_start, as_of),
        catalog.known_hosts(),
    )?;
    Ok(Evidence {
        as_of,
        facts: now,
        earlier: weeks.into_iter().zip(earlier).collect(),
        pending,
        trails: BTreeMap::new(),
        applied,
        known: known.into_iter().collect(),
        period_start,
    })
}

/// The facts at each of `weeks`, as many moments at a time as there are
/// CPUs (and readers).
async fn weeks_facts(
    catalog: &Catalog,
    weeks: &[DateTime<Utc>],
) -> Result<Vec<Vec<nightshift_catalog::HostFacts>>, nightshift_catalog::CatalogError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    futures::stream::iter(weeks.iter().map(|&at| catalog.host_facts(at)))
        .buffered(
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(PARALLEL_MOMENTS),
        )
        .try_collect()
        .await
}

/// The inventory's hosts (of one group, with `--group`), each host's
/// groups, and the hosts some enabled schedule reaches.
fn fleet(plan: &Plan, group: Option<&str>) -> anyhow::Result<Fleet> {
    let inventory = &plan.inventory;
    let targets = inventory.targets();
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in inventory.group_names() {
        for host in targets.group_hosts(name) {
            groups
                .entry(host.to_string())
                .or_default()
                .insert(name.to_string());
        }
    }
    let hosts: Vec<String> = match group {
        None => inventory.hosts.keys().cloned().collect(),
        Some(g) => {
            anyhow::ensure!(
                inventory.group_names().contains(g),
                "--group {g}: the inventory has no such group"
            );
            targets
                .group_hosts(g)
                .into_iter()
                .map(str::to_string)
                .collect()
        }
    };
    let mut scheduled = BTreeSet::new();
    for schedule in plan.schedules.iter().filter(|s| s.enabled) {
        if let Some(playbook) = plan.playbook(&schedule.playbook) {
            let wanted: Vec<&str> = playbook.targets.iter().map(String::as_str).collect();
            scheduled.extend(targets.resolve(&wanted).into_iter().map(str::to_string));
        }
    }
    Ok(Fleet {
        hosts,
        groups,
        scheduled,
        group: group.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Local, TimeZone};

    use super::moment;

    #[test]
    fn a_date_means_the_last_millisecond_of_that_local_day() {
        let at = moment(Some("2026-11-20")).expect("a date");
        let end = Local
            .with_ymd_and_hms(2026, 11, 21, 0, 0, 0)
            .earliest()
            .expect("a local midnight")
            .to_utc()
            - chrono::Duration::milliseconds(1);
        assert_eq!(at, end);
    }

    #[test]
    fn times_read_as_local_or_rfc3339_and_nonsense_is_refused() {
        let rfc = moment(Some("2026-11-20T03:00:00+01:00")).expect("RFC 3339");
        assert_eq!(rfc.to_rfc3339(), "2026-11-20T02:00:00+00:00");
        assert!(moment(Some("2026-11-20T03:00")).is_ok());
        for bad in ["yesterday", "2026-13-01", "0000-01-01T00:00:00Z"] {
            let err = moment(Some(bad)).expect_err(bad).to_string();
            assert!(err.starts_with(&format!("--as-of {bad}")), "{err}");
        }
    }
}
