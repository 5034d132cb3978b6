//! `nightshift history`: one host's runs, newest first.

use crate::command::runs::shown;
use crate::record::with_catalog;
use crate::settings::Settings;
use clap::Args;
use comfy_table::{Table, presets};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub host: String,
    /// At most this many events, newest first
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift history HOST`.
pub fn run(settings: &Settings, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
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
