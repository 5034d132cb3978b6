use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nightshift_scheduler::moment::Moment;

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

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or directories to check [default: the playbooks and schedules the config names]
    pub paths: Vec<PathBuf>,
    /// Print diagnostics as JSON
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Hosts: names, group:NAME, globs, all, and exclusions like !db3, comma-separated
    pub targets: String,
    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Hosts worked on at once [default: the config's ssh.forks, 50]
    #[arg(long)]
    pub forks: Option<usize>,
    /// Stop the command on a host after this long (45s, 10m)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Run through `sudo -n`
    #[arg(long = "become", short = 'b')]
    pub become_root: bool,
    /// Set an environment variable for the command
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Pass this variable from nightshift's own environment, as a secret never shown
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// One JSON object per host instead of live output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// List the inventory's hosts and how each is reached
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Fetch hosts' SSH keys, show their fingerprints, and record them after confirmation
    Trust {
        /// Inventory host names
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Record without asking (for scripts)
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List upcoming runs: cron fire times that fall inside their window
    Next(NextArgs),
}

#[derive(Debug, Args)]
pub struct NextArgs {
    /// How many runs to list
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub count: u16,
    /// Start from this time instead of now; a date means its start, 00:00 local
    /// (2026-11-20, 2026-11-20T03:00 local, RFC 3339, today, an age such as 2h)
    #[arg(long, value_name = "TIME")]
    pub from: Option<Moment>,
    /// Print the runs as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(required_unless_present = "stream", conflicts_with = "stream")]
    pub paths: Vec<PathBuf>,
    /// The host the data is on; this command backs up localhost (remote hosts
    /// are backed up by a playbook's backup step)
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Back up standard input as one file of this name (pg_dumpall | nightshift backup --stream db.sql)
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Label the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Compare against this snapshot instead of the latest of the same host and paths
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// When this backup creates the store, create it unencrypted (for disks
    /// that are encrypted underneath)
    #[arg(long)]
    pub no_encryption: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct FindArgs {
    /// A glob: a name (nginx.conf, '*.conf') or, with a slash, a whole path ('/etc/nginx/**')
    pub pattern: String,
    /// Only this host's snapshots
    #[arg(long)]
    pub host: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct LsArgs {
    /// SNAPSHOT or SNAPSHOT:PATH: an id prefix, latest, web1/latest, web1@2026-11-20T03:00 (latest at or before, local time)
    pub snapshot: String,
    /// Only entries under this path
    #[arg(default_value = "/")]
    pub path: String,
    /// Mode, owner, group, size and modification time of each entry
    #[arg(long, short = 'l')]
    pub long: bool,
    /// Everything below, not only the directory's own entries
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// Print JSON, one object per entry (with every detail)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:PATH (latest:/etc/nginx, 7f3a91c2:/home, web1@2026-11-20T03:00:/etc)
    pub what: String,
    /// Where to restore: a local DIR, or HOST:DIR on an inventory host over SSH; a PATH lands under its own name
    #[arg(
        long,
        value_name = "[HOST:]DIR",
        required_unless_present_any = ["tar", "in_place"],
        conflicts_with_all = ["tar", "in_place"]
    )]
    pub to: Option<PathBuf>,
    /// Write a tar stream to FILE instead (- for standard output)
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Restore onto the snapshot's own host, where the files came from (asks first; --yes for scripts)
    #[arg(long, conflicts_with = "tar")]
    pub in_place: bool,
    /// Replace files that exist at the target (refused otherwise)
    #[arg(long)]
    pub overwrite: bool,
    /// Say what would be restored and what exists at the target; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before an --in-place restore
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Unpack on the host through `sudo -n` (to restore ownership and system files)
    #[arg(long = "become")]
    pub become_root: bool,
    /// Restore owners, setuid/setgid bits, device nodes and FIFOs as the snapshot recorded them; the default for in-place restores, off for restores onto another host or this controller
    #[arg(long)]
    pub keep_privileges: bool,
    /// Who the catalog and the audit log record as doing the restore [default: $USER]
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the store under the data directory (a first backup does this too)
    Init {
        /// zstd level for chunks, 1 to 22
        #[arg(long, default_value_t = 3)]
        compression_level: i32,
        /// Close packs at this size in MiB
        #[arg(long, default_value_t = 16, value_name = "MIB")]
        pack_size: u32,
        /// Store chunks unencrypted (for disks that are encrypted underneath)
        #[arg(long)]
        no_encryption: bool,
    },
    /// Manage the passphrases that open the encrypted store
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check the store's structure; with --read-data, every chunk's content
    Check {
        /// Read, decompress and hash every pack
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read this share of the store's bytes (5%), the packs verified longest ago first
        #[arg(long, value_name = "PERCENT")]
        read_data_subset: Option<String>,
        /// Only report how much has never been read and verified, and the oldest verification
        #[arg(long, conflicts_with_all = ["read_data", "read_data_subset"])]
        status: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Free the space of data no snapshot needs: mark now, delete on a later run
    Prune {
        /// Say what would be marked, repacked and deleted, and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Rewrite packs less than this share of which is still needed
        #[arg(long, value_name = "PERCENT", default_value = "50%")]
        repack_below: String,
        /// Then repack the least needed packs until unneeded bytes are at most this share of needed ones
        #[arg(long, value_name = "PERCENT", default_value = "5%")]
        max_unused: String,
        /// How long packs stay marked before a prune deletes them; longer than your longest backup
        #[arg(long, value_name = "DURATION", default_value = "24h",
              value_parser = nightshift_plan::Duration::parse_allowing_zero)]
        delete_delay: std::time::Duration,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Sizes: snapshots, packs, chunks, bytes on disk, index memory
    Stats {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the packs' own headers
    RebuildIndex,
    /// After check found damage: salvage what still reads, rebuild the index, record damaged snapshots
    Repair {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove locks left by processes that are gone; --all removes every lock
    Unlock {
        /// Also remove locks of live or unknown processes (other hosts): only when you know they are gone
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsCommand>,
    /// Only runs that touched this host
    #[arg(long)]
    pub host: Option<String>,
    /// Only runs of this playbook
    #[arg(long)]
    pub playbook: Option<String>,
    /// Only runs started since then; a date means its start, 00:00 local
    /// (2026-11-01, 2026-11-01T03:00 local, RFC 3339, yesterday, an age such as 7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<Moment>,
    /// Only runs that failed, halted or were interrupted, or in which a host failed
    #[arg(long)]
    pub failed: bool,
    /// At most this many runs
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run per host and step: status, timings, error kind, output tail
    Show {
        run: i64,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the store's keys
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a passphrase (from --key-file, NIGHTSHIFT_NEW_PASSPHRASE, or asked twice)
    Add {
        /// Read the new passphrase from this file
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Remove a key by id prefix; the last key cannot be removed
    Remove { id: String },
    /// Print the passphrase in use (the generated key file's content), for safekeeping
    Export,
}

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The playbook, by name
    pub playbook: String,
    /// Only these of its hosts: names, group:NAME, globs, exclusions like !db3, comma-separated
    #[arg(long)]
    pub limit: Option<String>,
    /// Run now even if the playbook's window (and the hosts' own) is closed; needs --reason, and is audited
    #[arg(long, requires = "reason")]
    pub ignore_window: bool,
    /// Why the window is overridden, for the audit log
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait for the run to end and exit with its outcome
    #[arg(long)]
    pub wait: bool,
    /// Print the request (and, with --wait, the run) as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Serve Prometheus metrics on this address (127.0.0.1:9187); off unless given
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Every host against every policy of [policy], with the evidence and the trend
    Compliance(ComplianceArgs),
    /// One host's record for an auditor: each policy, its dates, pending updates and runs
    Host(HostReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
    /// One self-contained file, with charts; prints on A4
    Html,
}

#[derive(Debug, Args)]
pub struct ComplianceArgs {
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only the hosts of this inventory group
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The report as it would have read then; a date means its end, 23:59:59.999 local
    /// (2026-11-20, 2026-11-20T03:00 local, RFC 3339, yesterday, an age such as 30d)
    #[arg(long, value_name = "WHEN")]
    pub as_of: Option<Moment>,
    /// Exit with status 1 when some host is not compliant (exempt ones count as compliant)
    #[arg(long)]
    pub fail_if_not_compliant: bool,
}

#[derive(Debug, Args)]
pub struct HostReportArgs {
    pub host: String,
    /// The record as it stood then; a date means its end, 23:59:59.999 local
    /// (2026-11-20, 2026-11-20T03:00 local, RFC 3339, yesterday, an age such as 30d)
    #[arg(long, value_name = "WHEN")]
    pub as_of: Option<Moment>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}
