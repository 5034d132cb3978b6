//! `nightshift status`: is the daemon up, what runs next and when (in which
//! window), what is running now, how each playbook last ended, and what
//! waits: trigger requests for a closed window, hosts deferred to theirs.

use crate::settings::Settings;
use chrono::Utc;
use clap::Args;
use comfy_table::{Table, presets};
use nightshift_catalog::{
    CATALOG_FILE, Catalog, DeferredHost, FireRow, LastRun, RunRow, TriggerRow,
};
use nightshift_daemon::lock::{self, Holder};
use nightshift_scheduler::{entries, next_fire};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Status {
    daemon: Option<Holder>,
    schedules: Vec<ScheduleStatus>,
    running: Vec<RunRow>,
    last: Vec<LastRun>,
    triggers: Vec<TriggerRow>,
    deferred: Vec<DeferredHost>,
}

#[derive(Debug, Serialize)]
struct ScheduleStatus {
    playbook: String,
    cron: String,
    timezone: String,
    window: String,
    /// RFC 3339 in the schedule's zone; `None` when it never fires.
    next: Option<String>,
    window_closes: Option<String>,
    last_fire: Option<FireRow>,
}

pub fn run(settings: &Settings, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let plan = settings.plan()?;
    let daemon = lock::running(&settings.data_dir);
    let now = Utc::now();
    let path = settings.data_dir.join(CATALOG_FILE);
    let runtime = tokio::runtime::Runtime::new()?;
    let status = runtime.block_on(async {
        let catalog = if path.is_file() {
            Some(Catalog::open(&path).await?)
        } else {
            None
        };
        let mut schedules = Vec::new();
        for entry in entries(&plan) {
            let next = next_fire(&entry, now);
            let last_fire = match &catalog {
                Some(c) => c.fires(&entry.key, 1).await?.into_iter().next(),
                None => None,
            };
            schedules.push(ScheduleStatus {
                playbook: entry.playbook.clone(),
                cron: entry.cron.source().to_string(),
                timezone: entry.timezone.name().to_string(),
                window: entry.window_name.clone(),
                next: next.map(|f| f.at.to_rfc3339()),
                window_closes: next.map(|f| f.window_closes.to_rfc3339()),
                last_fire,
            });
        }
        // Soonest first, in absolute time; schedules that never fire last.
        schedules.sort_by_key(|s| {
            s.next
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or((1, None), |t| (0, Some(t.to_utc())))
        });
        let status = match &catalog {
            Some(c) => Status {
                daemon,
                schedules,
                running: c.running().await?,
                last: c.last_runs().await?,
                triggers: c.open_triggers().await?,
                deferred: c.deferred_hosts().await?,
            },
            None => Status {
                daemon,
                schedules,
                running: Vec::new(),
                last: Vec::new(),
                triggers: Vec::new(),
                deferred: Vec::new(),
            },
        };
        if let Some(c) = catalog {
            c.close().await;
        }
        anyhow::Ok(status)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status, settings));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(status: &Status, settings: &Settings) -> String {
    let mut out = match &status.daemon {
        Some(d) => format!(
            "daemon running · pid {} · since {}{}\n",
            d.pid,
            d.started,
            d.metrics
                .as_ref()
                .map(|m| format!(" · metrics http://{m}/metrics"))
                .unwrap_or_default()
        ),
        None => format!(
            "daemon not running for {} · start it with `nightshift daemon` (or systemctl start nightshift)\n",
            settings.data_dir.display()
        ),
    };
    out.push('\n');
    out.push_str(&schedules(&status.schedules));
    if !status.running.is_empty() {
        out.push_str("\nIN PROGRESS\n");
        let rows = status.running.iter().map(|r| {
            vec![
                format!("run {}", r.id),
                r.playbook.clone(),
                format!("started {}", short(&r.started)),
                r.window
                    .clone()
                    .map_or("no window".into(), |w| format!("window {w}")),
                format!("{} hosts so far", r.hosts),
            ]
        });
        out.push_str(&table(None, rows));
    }
    if !status.last.is_empty() {
        out.push_str("\nLAST RESULT\n");
        let rows = status.last.iter().map(|r| {
            vec![
                r.playbook.clone(),
                format!("run {}", r.run_id),
                r.status.clone(),
                short(&r.started),
                r.halted_because.clone().unwrap_or_default(),
            ]
        });
        out.push_str(&table(None, rows));
    }
    if !status.triggers.is_empty() || !status.deferred.is_empty() {
        out.push_str("\nWAITING\n");
        let triggers = status.triggers.iter().map(|t| {
            vec![
                format!("trigger {}", t.id),
                t.playbook.clone(),
                format!("by {}", t.requested_by),
                t.detail.clone().unwrap_or_else(|| t.state.clone()),
            ]
        });
        let deferred = status.deferred.iter().map(|d| {
            vec![
                d.host.clone(),
                d.playbook.clone(),
                format!("deferred in run {}", d.run_id),
                d.detail.clone().unwrap_or_default(),
            ]
        });
        out.push_str(&table(None, triggers.chain(deferred)));
    }
    out
}

fn schedules(list: &[ScheduleStatus]) -> String {
    if list.is_empty() {
        return "no schedules\n".into();
    }
    let rows = list.iter().map(|s| {
        let next = match (&s.next, &s.window_closes) {
            (Some(next), Some(closes)) => format!("{} (closes {})", local(next), local(closes)),
            _ => "never (check its window and cron)".into(),
        };
        let last = s.last_fire.as_ref().map_or("—".into(), |f| {
            format!(
                "{} {}{}",
                short(&f.fire),
                f.outcome,
                f.run_id.map(|r| format!(" (run {r})")).unwrap_or_default()
            )
        });
        vec![
            s.playbook.clone(),
            format!("`{}` {}", s.cron, s.timezone),
            s.window.clone(),
            next,
            last,
        ]
    });
    table(
        Some(&["PLAYBOOK", "CRON", "WINDOW", "NEXT", "LAST FIRE"]),
        rows,
    )
}

fn table(header: Option<&[&str]>, rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    if let Some(header) = header {
        table.set_header(header.to_vec());
    }
    for row in rows {
        table.add_row(row);
    }
    format!("{}\n", table.trim_fmt())
}

/// "2026-12-01T02:00:00.000Z" as "2026-12-01 02:00 UTC".
fn short(stamp: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(stamp)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| stamp.to_string())
}

/// An RFC 3339 time with offset, shown as its own zone's wall clock.
fn local(stamp: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(stamp)
        .map(|t| t.format("%a %Y-%m-%d %H:%M %:z").to_string())
        .unwrap_or_else(|_| stamp.to_string())
}
