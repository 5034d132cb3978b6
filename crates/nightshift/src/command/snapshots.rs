//! `nightshift snapshots`: what the store holds, newest last.

use crate::keys::{self};
use crate::settings::Settings;
use crate::show::local_time;
use clap::Args;
use comfy_table::{Table, presets};
use indicatif::HumanBytes;
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only this host's snapshots
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots holding this path (or a directory above it)
    #[arg(long)]
    pub path: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// The store's snapshots, oldest first; only `host`'s when given.
pub(crate) fn snapshots_of(
    store: &nightshift_store::Store,
    host: Option<&str>,
) -> anyhow::Result<Vec<nightshift_store::SnapshotEntry>> {
    Ok(store
        .snapshots()?
        .into_iter()
        .filter(|e| host.is_none_or(|h| e.snapshot.host == h))
        .collect())
}

/// `nightshift snapshots`.
pub fn run(settings: &Settings, args: &SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let mut all = snapshots_of(&store, args.host.as_deref())?;
    if let Some(path) = &args.path {
        let path = path.trim_end_matches('/');
        all.retain(|e| {
            e.snapshot.paths.iter().any(|p| {
                let p = p.trim_end_matches('/');
                path == p
                    || path.starts_with(&format!("{p}/"))
                    || p.starts_with(&format!("{path}/"))
            })
        });
    }
    let damaged = store.damaged_snapshots();
    if args.json {
        let rows: Vec<_> = all
            .iter()
            .map(|e| {
                let mut value = serde_json::to_value(&e.snapshot).expect("serializes");
                value["id"] = json!(e.id);
                value["damaged_paths"] = json!(damaged.get(&e.id).map(|d| d.lost.len()));
                value
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["ID", "TIME", "HOST", "PATHS", "FILES", "SIZE", "TAGS"]);
    for e in &all {
        let s = &e.snapshot;
        table.add_row([
            e.short_id().to_string(),
            local_time(s.time),
            s.host.clone(),
            s.paths.join(" "),
            s.summary.files.to_string(),
            HumanBytes(s.summary.bytes_total).to_string(),
            match damaged.get(&e.id) {
                Some(damage) => format!(
                    "{} DAMAGED: {} paths lost",
                    s.tags.join(","),
                    damage.lost.len()
                )
                .trim_start()
                .to_string(),
                None => s.tags.join(","),
            },
        ]);
    }
    println!("{table}");
    println!("{} snapshots", all.len());
    Ok(ExitCode::SUCCESS)
}
