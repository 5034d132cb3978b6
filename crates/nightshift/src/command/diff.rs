//! `nightshift diff`: what changed between two snapshots.

use crate::keys;
use crate::settings::Settings;
use clap::Args;
use indicatif::HumanBytes;
use nightshift_store::{Change, split_path};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first snapshot (id prefix, web1/latest, web1@2026-11-20T03:00, ...)
    pub a: String,
    /// The second snapshot
    pub b: String,
    /// Only under this path
    #[arg(default_value = "/")]
    pub path: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift diff A B [PATH]`.
pub fn run(settings: &Settings, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let (a_spec, a_path) = split_path(&args.a);
    let path = if args.a.contains(":/") {
        a_path
    } else {
        args.path.as_str()
    };
    let a = store.find_snapshot(a_spec)?;
    let b = store.find_snapshot(split_path(&args.b).0)?;
    let differences = store.diff(&a, &b, path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&differences)?);
        return Ok(ExitCode::SUCCESS);
    }
    for d in &differences {
        let size = |s: Option<u64>| s.map_or("—".into(), |s| HumanBytes(s).to_string());
        let line = match d.change {
            Change::Added => format!("+ {} ({})", d.path, size(d.new_size)),
            Change::Removed => format!("- {} ({})", d.path, size(d.old_size)),
            Change::Changed => {
                format!("M {} ({} → {})", d.path, size(d.old_size), size(d.new_size))
            }
        };
        println!("{line}");
    }
    let count = |c: Change| differences.iter().filter(|d| d.change == c).count();
    println!(
        "{} added, {} removed, {} changed · {} ({}) → {} ({})",
        count(Change::Added),
        count(Change::Removed),
        count(Change::Changed),
        a.short_id(),
        a.snapshot.time.format("%Y-%m-%d %H:%M UTC"),
        b.short_id(),
        b.snapshot.time.format("%Y-%m-%d %H:%M UTC")
    );
    Ok(ExitCode::SUCCESS)
}
