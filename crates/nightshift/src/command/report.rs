//! `nightshift report compliance` and `nightshift report host`: read the
//! catalog's evidence at the moment asked about (and weekly before it, for
//! the trend), judge it against `[policy]` and the exceptions, render.

use crate::settings::Settings;
use anyhow::Context as _;
use chrono::{DateTime, Duration, Local, Utc};
use clap::{Args, Subcommand};
use nightshift_catalog::{CATALOG_FILE, Catalog};
use nightshift_plan::Plan;
use nightshift_report::{Evidence, Fleet, Report};
use nightshift_scheduler::moment::Moment;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Every host against every policy of [policy], with the evidence and the trend
    Compliance(ComplianceArgs),
    /// One host's record for an auditor: each policy, its dates, pending updates and runs
    Host(HostReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
    /// One self-contained file, with charts; prints on A4
    Html,
}

#[derive(Debug, Args)]
pub struct ComplianceArgs {
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only the hosts of this inventory group
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The report as it would have read then; a date means its end, 23:59:59.999 local
    /// (2026-11-20, 2026-11-20T03:00 local, RFC 3339, yesterday, an age such as 30d)
    #[arg(long, value_name = "WHEN")]
    pub as_of: Option<Moment>,
    /// Exit with status 1 when some host is not compliant (exempt ones count as compliant)
    #[arg(long)]
    pub fail_if_not_compliant: bool,
}

#[derive(Debug, Args)]
pub struct HostReportArgs {
    pub host: String,
    /// The record as it stood then; a date means its end, 23:59:59.999 local
    /// (2026-11-20, 2026-11-20T03:00 local, RFC 3339, yesterday, an age such as 30d)
    #[arg(long, value_name = "WHEN")]
    pub as_of: Option<Moment>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Weekly points of the trend, the last being the report's moment.
const TREND_WEEKS: i64 = 12;

/// Moments read at once at most: the catalog has this many readers.
const PARALLEL_MOMENTS: usize = 4;

pub fn compliance(settings: &Settings, args: &ComplianceArgs) -> anyhow::Result<ExitCode> {
    let as_of = as_of(args.as_of)?;
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
    let as_of = as_of(args.as_of)?;
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

/// The report's moment: the end of the time asked about (the last
/// millisecond of a date), or now.
fn as_of(asked: Option<nightshift_scheduler::moment::Moment>) -> anyhow::Result<DateTime<Utc>> {
    let now = Utc::now();
    asked.map_or(Ok(now), |m| m.end(now)).context("--as-of")
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
