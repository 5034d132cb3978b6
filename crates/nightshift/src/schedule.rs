use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use comfy_table::{Table, presets};
use nightshift_plan::next::{Stuck, Upcoming, upcoming};

use crate::cli::NextArgs;
use crate::settings::Settings;

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
