//! `nightshift run PLAYBOOK`: a rollout, live while it runs, a table when it
//! ends, and an exit code that tells the truth. On a terminal the live view
//! is drawn with indicatif; piped, each event is one plain log line on
//! standard error; with `--json`, one JSON object per line on standard
//! output.

use crate::keys;
use crate::settings::Settings;
use anyhow::Context;
use clap::Args;
use nightshift_catalog::{CATALOG_FILE, Catalog, Trigger};
use nightshift_engine::reach::reach;
use nightshift_engine::rollout::{self, Rollout, StoreAccess, Target};
use nightshift_engine::stop::Stop;
use nightshift_plan::Playbook;
use nightshift_scheduler::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod live;
mod summary;

pub(crate) use live::log_line;
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
    let playbook = find_playbook(&plan, &args.playbook)?;
    // A manual run is the operator's decision: host windows are the
    // daemon's to keep.
    let targets = rollout_targets(&plan, &playbook, args.limit.as_deref(), false)?;
    let ssh = settings.ssh_config(&plan.inventory)?;
    // A check run creates no store: without one, backups report what
    // they would read, all of it new.
    let store = if needs_store(&playbook) && (!args.check || keys::store_exists(settings)) {
        Some(store_access(settings)?)
    } else {
        None
    };
    let forks = args.forks.unwrap_or(settings.config.ssh.forks);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let catalog = open_catalog(settings, args.check).await?;
        let rollout = Rollout {
            playbook,
            targets,
            check: args.check,
            forks,
            ssh,
            catalog: catalog.clone(),
            store,
            trigger: Trigger::Manual,
            operator: Some(crate::operator()),
            window: None,
            stop: Stop::default(),
            clock: Arc::new(SystemClock),
            fleet_slots: None,
            closing: None,
            grace: Duration::ZERO,
            undone_waits: false,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let work = tokio::spawn(rollout::run(rollout, tx));
        let jobs = render(rx, args.json).await;
        let report = work.await.context("the rollout task failed")?;
        if let Some(catalog) = catalog {
            catalog.close().await;
        }
        anyhow::Ok((report, jobs))
    })?;
    let (report, jobs) = report;
    if !args.json {
        print_summary(&report, &jobs, args.check);
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The rollout's hosts: the playbook's targets narrowed by `limit`, each
/// with the way to reach it and, with `windows`, its own window.
pub fn rollout_targets(
    plan: &nightshift_plan::Plan,
    playbook: &Playbook,
    limit: Option<&str>,
    windows: bool,
) -> anyhow::Result<Vec<Target>> {
    let inventory = &plan.inventory;
    targets(inventory, playbook, limit)?
        .iter()
        .map(|name| {
            Ok(Target {
                name: name.clone(),
                reach: reach(inventory, name)?,
                address: inventory.hosts.get(name).and_then(|h| h.address.clone()),
                retention: inventory
                    .retention(name)
                    .map(crate::command::forget::policy_of),
                window: plan.host_windows.get(name).filter(|_| windows).cloned(),
            })
        })
        .collect()
}

/// A playbook by file path or by name.
pub fn find_playbook(plan: &nightshift_plan::Plan, wanted: &str) -> anyhow::Result<Playbook> {
    let path = std::path::Path::new(wanted);
    let found = plan.playbooks.iter().find(|p| {
        p.name == wanted
            || p.file == path
            || std::fs::canonicalize(&p.file).ok() == std::fs::canonicalize(path).ok()
                && path.exists()
    });
    match found {
        Some(playbook) => Ok(playbook.clone()),
        None if path.exists() => anyhow::bail!(
            "{wanted} is not among the playbooks the config names (playbooks = {}); move it there or point the config at it",
            settings_dirs(plan)
        ),
        None => {
            let known: Vec<&str> = plan.playbooks.iter().map(|p| p.name.as_str()).collect();
            anyhow::bail!(
                "no playbook `{wanted}`; known playbooks: {}",
                known.join(", ")
            )
        }
    }
}

fn settings_dirs(plan: &nightshift_plan::Plan) -> String {
    let mut dirs: Vec<String> = plan
        .playbooks
        .iter()
        .filter_map(|p| p.file.parent().map(|d| d.display().to_string()))
        .collect();
    dirs.dedup();
    dirs.join(", ")
}

/// The playbook's hosts, narrowed by `--limit`.
pub(crate) fn targets(
    inventory: &nightshift_plan::inventory::Inventory,
    playbook: &Playbook,
    limit: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let resolver = inventory.targets();
    let wanted: Vec<&str> = playbook.targets.iter().map(String::as_str).collect();
    let mut names = resolver.resolve(&wanted);
    if let Some(limit) = limit {
        let patterns: Vec<&str> = limit
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if let Some(stray) = patterns
            .iter()
            .find(|p| resolver.matching(p.trim_start_matches('!')).is_empty())
        {
            anyhow::bail!(
                "--limit: `{stray}` matches no host in the inventory; `nightshift hosts list` shows them"
            );
        }
        let allowed = resolver.resolve(&patterns);
        names.retain(|n| allowed.contains(n));
    }
    anyhow::ensure!(
        !names.is_empty(),
        "the playbook's targets (and --limit) leave no host to run on"
    );
    Ok(names.into_iter().map(str::to_string).collect())
}

pub(crate) fn needs_store(playbook: &Playbook) -> bool {
    use nightshift_plan::{Action, Verify};
    playbook.steps.iter().any(|s| {
        matches!(
            s.action,
            Action::Backup(_) | Action::Verify(Verify::BackupCheck | Verify::RestoreTest)
        )
    })
}

pub(crate) fn store_access(settings: &Settings) -> anyhow::Result<StoreAccess> {
    let store = keys::open_or_create(settings, false)?;
    let passphrase = keys::passphrase(settings, &store)?;
    Ok(StoreAccess {
        root: store.root().to_path_buf(),
        passphrase,
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
