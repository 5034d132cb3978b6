//! `nightshift forget`: snapshots dropped by a retention policy, the inventory's or the one given.

use crate::command::snapshots::snapshots_of;
use crate::keys::{self};
use crate::settings::Settings;
use crate::show::local_time;
use chrono::Local;
use clap::Args;
use comfy_table::{Table, presets};
use nightshift_engine::launch::retention_policy;
use nightshift_plan::inventory::Retention;
use nightshift_store::LockKind;
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Keep the N newest snapshots of each host and path set
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot this young, counted from the newest (30d, 12h)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<nightshift_plan::Duration>,
    /// Keep snapshots with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Only this host's snapshots
    #[arg(long)]
    pub host: Option<String>,
    /// Show what would be forgotten, and why the rest is kept; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the decisions as JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift forget`: applies a retention policy to the snapshots: the
/// one the options give, or without options each host's from the inventory.
pub fn run(settings: &Settings, args: &ForgetArgs) -> anyhow::Result<ExitCode> {
    let policy = retention_policy(Retention {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within,
        keep_tags: args.keep_tags.clone(),
    });
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "forget")?;
    let snapshots = snapshots_of(&store, args.host.as_deref())?;
    let decisions = if policy.is_empty() {
        by_inventory(settings, &snapshots)?
    } else {
        nightshift_store::decide(&snapshots, &policy, &Local)
    };
    let doomed: Vec<String> = decisions
        .iter()
        .filter(|d| !d.keep())
        .map(|d| d.snapshot.id.clone())
        .collect();
    if args.json {
        let rows: Vec<_> = decisions
            .iter()
            .map(|d| {
                json!({
                    "id": d.snapshot.id, "time": d.snapshot.snapshot.time,
                    "host": d.snapshot.snapshot.host, "paths": d.snapshot.snapshot.paths,
                    "keep": d.keep(), "reasons": d.reasons,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = Table::new();
        table.load_preset(presets::NOTHING);
        table.set_header(["ID", "TIME", "HOST", "PATHS", "DECISION", "WHY"]);
        for d in &decisions {
            let s = &d.snapshot.snapshot;
            table.add_row([
                d.snapshot.short_id().to_string(),
                local_time(s.time),
                s.host.clone(),
                s.paths.join(" "),
                if d.keep() { "keep" } else { "forget" }.to_string(),
                d.reasons.join(", "),
            ]);
        }
        println!("{table}");
    }
    let verb = if args.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    if !args.dry_run {
        store.forget(&doomed)?;
    }
    eprintln!(
        "{verb} {} of {} snapshots; their data is freed by `nightshift store prune`",
        doomed.len(),
        decisions.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Decisions by each host's inventory policy; a host without one keeps
/// every snapshot, and says so.
fn by_inventory(
    settings: &Settings,
    snapshots: &[nightshift_store::SnapshotEntry],
) -> anyhow::Result<Vec<nightshift_store::Decision>> {
    let inventory = settings.plan()?.inventory;
    let mut hosts: Vec<&str> = snapshots.iter().map(|s| s.snapshot.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let mut decisions = Vec::new();
    for host in hosts {
        let mine: Vec<_> = snapshots
            .iter()
            .filter(|s| s.snapshot.host == host)
            .cloned()
            .collect();
        match inventory.retention(host) {
            Some(r) => decisions.extend(nightshift_store::decide(
                &mine,
                &retention_policy(r),
                &Local,
            )),
            None => {
                eprintln!(
                    "note: no retention policy for host {host} in the inventory: its snapshots are kept"
                );
                let why = format!("no retention policy for host {host}");
                decisions.extend(mine.into_iter().map(|snapshot| nightshift_store::Decision {
                    snapshot,
                    reasons: vec![why.clone()],
                }));
            }
        }
    }
    decisions.sort_by_key(|d| d.snapshot.snapshot.time);
    Ok(decisions)
}
