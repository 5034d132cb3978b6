use crate::settings::Settings;
use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::{Table, presets};
use nightshift_plan::next::{Stuck, Upcoming, upcoming};
use nightshift_scheduler::moment::Moment;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List upcoming runs: cron fire times that fall inside their window
    Next(NextArgs),
}

#[derive(Debug, Args)]
pub struct NextArgs {
    /// How many runs to list
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub count: u16,
    /// Start from this time instead of now; a date means its start, 00:00 local
    /// (2026-11-20, 2026-11-20T03:00 local, RFC 3339, today, an age such as 2h)
    #[arg(long, value_name = "TIME")]
    pub from: Option<Moment>,
    /// Print the runs as JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift schedule next`: the runs to expect, each inside its window.
pub fn next(settings: &Settings, args: &NextArgs) -> anyhow::Result<ExitCode> {
    let from = match &args.from {
        Some(from) => from.start(Utc::now()).context("--from")?,
        None => Utc::now(),
    };
    let plan = settings.plan()?;
    let (runs, stuck) = upcoming(&plan, from, args.count.into());
    if args.json {
        let doc = serde_json::json!({ "from": from, "runs": runs, "never_run": stuck });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&runs, &stuck));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(runs: &[Upcoming], stuck: &[Stuck]) -> String {
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("no scheduled runs ahead\n");
    } else {
        let mut table = Table::new();
        table.load_preset(presets::NOTHING);
        table.set_header(["LOCAL TIME", "UTC", "PLAYBOOK", "WINDOW"]);
        for run in runs {
            table.add_row([
                run.local.format("%a %Y-%m-%d %H:%M %Z").to_string(),
                run.utc.format("%Y-%m-%d %H:%M").to_string(),
                run.playbook.clone(),
                format!(
                    "{} (closes {})",
                    run.window,
                    run.window_closes.format("%H:%M")
                ),
            ]);
        }
        out.push_str(&table.trim_fmt());
        out.push('\n');
    }
    for s in stuck {
        out.push_str(&format!(
            "never runs: {} (`{}` in window {}): {}\n",
            s.playbook, s.cron, s.window, s.reason
        ));
    }
    out
}
