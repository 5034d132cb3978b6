//! `nightshift run PLAYBOOK`: a rollout, live while it runs, a table when it
//! ends, and an exit code that tells the truth. On a terminal the live view
//! is drawn with indicatif; piped, each event is one plain log line on
//! standard error; with `--json`, one JSON object per line on standard
//! output.

use crate::keys;
use crate::settings::Settings;
use anyhow::Context;
use clap::Args;
use nightshift_catalog::{CATALOG_FILE, Catalog};
use nightshift_engine::launch::{Launch, Origin};
use nightshift_engine::rollout;
use std::process::ExitCode;

mod live;
mod summary;

use live::render;
use summary::print_summary;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook: its file (playbooks/web-patch.toml) or its name (web-patch)
    pub playbook: String,
    /// Only these of its hosts: names, group:NAME, globs, exclusions like !db3, comma-separated
    #[arg(long, value_name = "TARGETS")]
    pub limit: Option<String>,
    /// Connect and report what would happen (upgrades, backup size, reboots); change nothing
    #[arg(long)]
    pub check: bool,
    /// Hosts worked on at once [default: the config's ssh.forks, 50]
    #[arg(long)]
    pub forks: Option<usize>,
    /// One JSON event per line on standard output instead of the live view
    #[arg(long)]
    pub json: bool,
}

pub fn run(settings: &Settings, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let plan = settings.plan()?;
    let operator = Origin::Manual {
        operator: crate::operator(),
    };
    // A manual run is the operator's decision: host windows are the
    // daemon's to keep.
    let launch = Launch::new(
        &plan,
        &args.playbook,
        operator,
        crate::settings::ssh_config(settings, &plan.inventory)?,
    )?
    .limit(args.limit.as_deref())
    .check(args.check)
    .forks(args.forks.unwrap_or(settings.config.ssh.forks));
    // A check run creates no store: without one, backups report what
    // they would read, all of it new.
    let launch = if launch.needs_store() && (!args.check || keys::store_exists(settings)) {
        launch.store(keys::store_access(settings)?)
    } else {
        launch
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (report, jobs) = runtime.block_on(async {
        let catalog = open_catalog(settings, args.check).await?;
        let rollout = match &catalog {
            Some(catalog) => launch.catalog(catalog.clone()),
            None => launch,
        }
        .build()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let work = tokio::spawn(rollout::run(rollout, tx));
        let jobs = render(rx, args.json).await;
        let report = work.await.context("the rollout task failed")?;
        if let Some(catalog) = catalog {
            catalog.close().await;
        }
        anyhow::Ok((report, jobs))
    })?;
    if !args.json {
        print_summary(&report, &jobs, args.check);
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn open_catalog(settings: &Settings, check: bool) -> anyhow::Result<Option<Catalog>> {
    if check {
        return Ok(None);
    }
    let catalog = Catalog::open(&settings.ensure_data_dir()?.join(CATALOG_FILE)).await?;
    let left = catalog.interrupt_orphans(chrono::Utc::now()).await?;
    if left.runs > 0 {
        eprintln!(
            "note: {} run(s) of a controller that is gone were left running; they now read as interrupted",
            left.runs
        );
    }
    Ok(Some(catalog))
}
