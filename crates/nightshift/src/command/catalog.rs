//! `nightshift catalog`: the catalog's upkeep.

use crate::keys;
use crate::record::snapshot_records;
use crate::record::with_catalog;
use crate::settings::Settings;
use crate::show::local_time;
use chrono::Utc;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Delete steps' full output older than the retention period (90 days); heads and tails stay
    Prune {
        /// Instead of the configured `[catalog] output_retention`
        #[arg(long, value_name = "DURATION")]
        older_than: Option<nightshift_plan::Duration>,
    },
    /// Refill the catalog's snapshot tables from the store, which is the truth about backups
    RebuildSnapshots,
}

/// `nightshift catalog prune|rebuild-snapshots`.
pub fn run(settings: &Settings, command: CatalogCommand) -> anyhow::Result<ExitCode> {
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
