//! `nightshift runs`, `runs show`, `history` and `catalog`: the catalog read
//! back for sysadmins, as tables on a terminal and JSON for scripts.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use comfy_table::{Table, presets};
use nightshift_catalog::{CATALOG_FILE, Catalog, RunDetail, RunFilter, RunRow, SnapshotRecord};

use crate::cli::{CatalogCommand, HistoryArgs, RunsArgs, RunsCommand};
use crate::keys;
use crate::settings::Settings;
use crate::store::local_time;

/// Runs `work` on the catalog under the data dir, on a small runtime.
pub fn with_catalog<T, F>(settings: &Settings, work: impl FnOnce(Catalog) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let catalog = Catalog::open(&settings.ensure_data_dir()?.join(CATALOG_FILE)).await?;
        let result = work(catalog.clone()).await;
        catalog.close().await;
        result
    })
}

/// A catalog time for people: local time, to the second.
fn shown(stamp: &str) -> String {
    DateTime::parse_from_rfc3339(stamp)
        .map(|t| local_time(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| stamp.to_string())
}

fn duration(started: &str, finished: Option<&str>) -> String {
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok();
    match (parse(started), finished.and_then(parse)) {
        (Some(a), Some(b)) => {
            let secs = (b - a).num_seconds().max(0);
            format!("{}m{:02}s", secs / 60, secs % 60)
        }
        _ => "-".into(),
    }
}

/// `nightshift runs` and `nightshift runs show RUN`.
pub fn runs(settings: &Settings, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    if let Some(RunsCommand::Show { run, json }) = &args.show {
        return show(settings, *run, *json);
    }
    let filter = RunFilter {
        host: args.host.clone(),
        playbook: args.playbook.clone(),
        since: (args.since.map(|since| since.start(Utc::now())))
            .transpose()
            .context("--since")?
            .map(nightshift_catalog::stamp),
        failed_only: args.failed,
        limit: args.limit,
    };
    let rows = with_catalog(settings, |c| async move { Ok(c.runs(&filter).await?) })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "RUN",
        "PLAYBOOK",
        "TRIGGER",
        "STARTED",
        "TOOK",
        "STATUS",
        "HOSTS FAILED",
    ]);
    for r in &rows {
        table.add_row([
            r.id.to_string(),
            r.playbook.clone(),
            r.trigger.clone(),
            shown(&r.started),
            duration(&r.started, r.finished.as_deref()),
            status(r),
            format!("{}/{}", r.hosts_failed, r.hosts),
        ]);
    }
    println!("{table}");
    println!("{} runs", rows.len());
    Ok(ExitCode::SUCCESS)
}

fn status(run: &RunRow) -> String {
    match &run.halted_because {
        Some(why) => format!("{}: {why}", run.status),
        None => run.status.clone(),
    }
}

fn show(settings: &Settings, run: i64, as_json: bool) -> anyhow::Result<ExitCode> {
    let detail = with_catalog(settings, |c| async move { Ok(c.run_detail(run).await?) })?
        .with_context(|| format!("no run {run} in the catalog: `nightshift runs` lists them"))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        print_detail(&detail);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_detail(detail: &RunDetail) {
    let r = &detail.run;
    println!(
        "run {} of {} ({}{}), started {}, took {}: {}",
        r.id,
        r.playbook,
        r.trigger,
        r.operator
            .as_deref()
            .map(|o| format!(" by {o}"))
            .unwrap_or_default(),
        shown(&r.started),
        duration(&r.started, r.finished.as_deref()),
        status(r)
    );
    for job in &detail.jobs {
        let error = job
            .error_kind
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        println!(
            "\n{} [batch {}]: {}{error}",
            job.host, job.batch, job.status
        );
        if let Some(detail) = &job.detail {
            println!("  {detail}");
        }
        if job.steps.is_empty() {
            continue;
        }
        let mut table = Table::new();
        table.load_preset(presets::NOTHING);
        table.set_header([
            "#", "STEP", "KIND", "STATUS", "EXIT", "TRIES", "TOOK", "CHANGED",
        ]);
        for s in &job.steps {
            let exit = match (&s.exit_code, &s.signal) {
                (_, Some(signal)) => signal.clone(),
                (Some(code), None) => code.to_string(),
                (None, None) => "-".into(),
            };
            table.add_row([
                s.position.to_string(),
                s.name.clone(),
                s.kind.clone(),
                s.status.clone(),
                exit,
                s.attempts.to_string(),
                duration(s.started.as_deref().unwrap_or(""), s.finished.as_deref()),
                if s.changed { "yes" } else { "no" }.to_string(),
            ]);
        }
        println!("{table}");
        for s in job.steps.iter().filter(|s| s.status != "ok") {
            if let Some(tail) = &s.output_tail {
                println!(
                    "--- output of step {} ({}), last lines:",
                    s.position, s.name
                );
                for line in tail
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    println!("  {line}");
                }
            }
        }
    }
}

/// `nightshift history HOST`.
pub fn history(settings: &Settings, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let host = args.host.clone();
    let limit = args.limit;
    let (known, events) = with_catalog(settings, |c| async move {
        Ok((c.knows_host(&host).await?, c.history(&host, limit).await?))
    })?;
    anyhow::ensure!(
        known || !events.is_empty(),
        "the catalog has no record of host `{}`: no run or backup has touched it (`nightshift runs` lists runs)",
        args.host
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["TIME", "WHAT", "DETAIL", "OUTCOME", "RUN"]);
    for e in &events {
        table.add_row([
            shown(&e.at),
            e.kind.clone(),
            e.detail.clone(),
            e.outcome.clone(),
            e.run_id.map(|r| r.to_string()).unwrap_or_default(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// `nightshift catalog prune|rebuild-snapshots`.
pub fn catalog(settings: &Settings, command: CatalogCommand) -> anyhow::Result<ExitCode> {
    match command {
        CatalogCommand::Prune { older_than } => {
            let keep = older_than.unwrap_or(settings.config.catalog.output_retention);
            let before = Utc::now() - chrono::Duration::from_std(keep.0)?;
            let removed = with_catalog(
                settings,
                |c| async move { Ok(c.prune_output(before).await?) },
            )?;
            println!(
                "removed the full output of {removed} steps finished before {}; their first and last 4 KiB stay",
                local_time(before)
            );
        }
        CatalogCommand::RebuildSnapshots => {
            let store = keys::open_store(settings)?;
            let records = snapshot_records(&store)?;
            let count = records.len();
            let (changed, forgotten) = with_catalog(settings, |c| async move {
                Ok(c.rebuild_snapshots(&records, Utc::now()).await?)
            })?;
            println!(
                "{count} snapshots in the store: {changed} catalog rows added or corrected, {forgotten} marked forgotten"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's snapshots as catalog rows, with what repair found damaged.
pub fn snapshot_records(store: &nightshift_store::Store) -> anyhow::Result<Vec<SnapshotRecord>> {
    let damaged = store.damaged_snapshots();
    Ok(store
        .snapshots()?
        .into_iter()
        .map(|e| {
            let damaged_paths = damaged.get(&e.id).map(|d| d.lost.len() as u64);
            record(&e, damaged_paths)
        })
        .collect())
}

pub fn record(
    entry: &nightshift_store::SnapshotEntry,
    damaged_paths: Option<u64>,
) -> SnapshotRecord {
    nightshift_engine::snapshot_row(entry, None, damaged_paths)
}

/// Records what a command did in the catalog without failing the
/// command: the store is the truth, and `catalog rebuild-snapshots`
/// catches the catalog up.
pub fn note<F>(settings: &Settings, what: &str, work: impl FnOnce(Catalog) -> F)
where
    F: Future<Output = anyhow::Result<()>>,
{
    if let Err(err) = with_catalog(settings, work) {
        eprintln!("warning: could not record the {what} in the catalog: {err:#}");
    }
}
