//! `nightshift runs`, `runs show`, `history` and `catalog`: the catalog read
//! back for sysadmins, as tables on a terminal and JSON for scripts.

use crate::record::with_catalog;
use crate::settings::Settings;
use crate::show::local_time;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets};
use nightshift_catalog::{RunDetail, RunFilter, RunRow};
use nightshift_scheduler::moment::Moment;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsCommand>,
    /// Only runs that touched this host
    #[arg(long)]
    pub host: Option<String>,
    /// Only runs of this playbook
    #[arg(long)]
    pub playbook: Option<String>,
    /// Only runs started since then; a date means its start, 00:00 local
    /// (2026-11-01, 2026-11-01T03:00 local, RFC 3339, yesterday, an age such as 7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<Moment>,
    /// Only runs that failed, halted or were interrupted, or in which a host failed
    #[arg(long)]
    pub failed: bool,
    /// At most this many runs
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run per host and step: status, timings, error kind, output tail
    Show {
        run: i64,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// A catalog time for people: local time, to the second.
pub(crate) fn shown(stamp: &str) -> String {
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
pub fn run(settings: &Settings, args: &RunsArgs) -> anyhow::Result<ExitCode> {
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
