use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

use crate::command::backup::BackupArgs;
use crate::command::catalog::CatalogCommand;
use crate::command::check::CheckArgs;
use crate::command::daemon::DaemonArgs;
use crate::command::diff::DiffArgs;
use crate::command::exec::ExecArgs;
use crate::command::find::FindArgs;
use crate::command::forget::ForgetArgs;
use crate::command::history::HistoryArgs;
use crate::command::hosts::HostsCommand;
use crate::command::ls::LsArgs;
use crate::command::report::ReportCommand;
use crate::command::restore::RestoreArgs;
use crate::command::run::RunArgs;
use crate::command::runs::RunsArgs;
use crate::command::schedule::ScheduleCommand;
use crate::command::snapshots::SnapshotsArgs;
use crate::command::status::StatusArgs;
use crate::command::store::StoreCommand;
use crate::command::trigger::TriggerArgs;

/// Patch, backup and maintenance orchestrator for Linux fleets.
///
/// Playbooks say what to do, schedules and windows say when, the inventory
/// says to whom. Every run is recorded in the catalog under the data
/// directory, next to the deduplicated backup store.
#[derive(Debug, Parser)]
#[command(
    name = "nightshift",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file [default: ./nightshift.toml when present, else built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the catalog and the backup store live
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "NIGHTSHIFT_DATA_DIR",
        hide_env_values = true,
        default_value = ".nightshift"
    )]
    pub data_dir: PathBuf,
    /// More log output (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate playbooks, schedules, inventory and config; exit 1 on any error
    Check(CheckArgs),
    /// Show when schedules fire next, and in which window
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Roll a playbook out over its hosts, batch by batch (--check changes nothing)
    Run(RunArgs),
    /// Run an ad-hoc command on hosts: nightshift exec 'group:web,!web3' -- uptime
    Exec(ExecArgs),
    /// List inventory hosts; trust their SSH host keys
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Back up local paths, or standard input as a named stream, into the store
    Backup(BackupArgs),
    /// List snapshots, oldest first
    Snapshots(SnapshotsArgs),
    /// List what a snapshot holds: nightshift ls latest /etc
    Ls(LsArgs),
    /// Find every version of matching files across snapshots: nightshift find '*.conf'
    Find(FindArgs),
    /// What was added, removed and changed between two snapshots
    Diff(DiffArgs),
    /// Restore a snapshot or part of it into a directory, verifying every chunk
    Restore(RestoreArgs),
    /// Forget snapshots by a retention policy; --dry-run says what would go and why the rest stay
    Forget(ForgetArgs),
    /// Maintain the backup store: init, check, stats, keys, unlock
    #[command(subcommand)]
    Store(StoreCommand),
    /// Runs recorded in the catalog, newest first; `runs show RUN` for one in detail
    Runs(RunsArgs),
    /// One host's maintenance record: runs, patches, backups, restores, reboots
    History(HistoryArgs),
    /// Maintain the catalog: prune old step output, rebuild snapshots from the store
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Ask the running daemon to start a run now (inside its window unless --ignore-window)
    Trigger(TriggerArgs),
    /// Run schedules, only ever inside their maintenance windows
    Daemon(DaemonArgs),
    /// The daemon, what runs next and when, runs in progress, the last result per playbook
    Status(StatusArgs),
    /// Compliance reports: who is patched, backed up and restore-tested within policy
    #[command(subcommand)]
    Report(ReportCommand),
}
