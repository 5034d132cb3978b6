//! `nightshift run PLAYBOOK`: a rollout, live while it runs, a table when it
//! ends, and an exit code that tells the truth. On a terminal the live view
//! is drawn with indicatif; piped, each event is one plain log line on
//! standard error; with `--json`, one JSON object per line on standard
//! output.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comfy_table::{Table, presets};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use nightshift_catalog::{CATALOG_FILE, Catalog, JobStatus, Trigger};
use nightshift_engine::event::{Event, JobReport, RunReport};
use nightshift_engine::reach::reach;
use nightshift_engine::rollout::{self, Rollout, StoreAccess, Target};
use nightshift_engine::stop::Stop;
use nightshift_plan::Playbook;
use nightshift_scheduler::SystemClock;

use crate::cli::RunArgs;
use crate::keys;
use crate::settings::Settings;

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
                retention: inventory.retention(name).map(crate::store::policy_of),
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

/// Draws events as they come; returns the finished jobs, in order.
async fn render(mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>, json: bool) -> Vec<JobReport> {
    let live = !json && std::io::stderr().is_terminal();
    let mut view = live.then(LiveView::default);
    let mut jobs = Vec::new();
    let mut lists = None;
    while let Some(event) = rx.recv().await {
        if let Event::RunStarted { run, .. } = &event {
            lists = Some(where_listed(*run));
        }
        if json {
            if let Ok(line) = serde_json::to_string(&event) {
                println!("{line}");
            }
        } else if let Some(view) = &mut view {
            view.show(&event);
        } else if let Some(line) = plain_line(&event, lists.as_deref()) {
            eprintln!("{line}");
        }
        if let Event::HostFinished(job) = event {
            jobs.push(job);
        }
    }
    if let Some(view) = view {
        view.finish();
    }
    jobs
}

/// Where the whole of a list that a step line shortens can be read: the
/// catalog's record of the run, or, when nothing is recorded (`--check`),
/// the JSON events.
fn where_listed(run: Option<i64>) -> String {
    match run {
        Some(run) => format!("`nightshift runs show {run}` lists them"),
        None => "`--json` lists them".to_string(),
    }
}

/// An event as one plain log line.
pub(crate) fn log_line(event: &Event) -> Option<String> {
    plain_line(event, None)
}

/// An event as one plain log line; `lists` says where the whole of a
/// shortened list can be read.
fn plain_line(event: &Event, lists: Option<&str>) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            playbook,
            hosts,
            batches,
            max_failures,
            check,
            run,
        } => format!(
            "{playbook} · {hosts} hosts · batches {} · max failures {}{}{}",
            batches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            if *max_failures == usize::MAX {
                "none".to_string()
            } else {
                max_failures.to_string()
            },
            if *check {
                " · check mode: nothing is changed"
            } else {
                ""
            },
            run.map(|r| format!(" · run {r}")).unwrap_or_default(),
        ),
        Event::BatchStarted { batch, of, hosts } => {
            format!("batch {batch}/{of}: {}", hosts.join(" "))
        }
        Event::StepStarted { host, step, .. } => format!("{host}  {step}: started"),
        Event::Progress { .. } => return None,
        Event::StepFinished { host, step } => step_line(host, step, lists),
        Event::HostFinished(job) => format!(
            "{}  {}{}",
            job.host,
            job.status,
            job.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        Event::Halted { reason } => format!("halting: {reason}; no new batch starts"),
        Event::RunFinished(_) => return None,
    })
}

/// How long a step line may grow to name what its summary counts.
const LINE_WIDTH: usize = 150;

/// "web1  security updates: ok 2 packages upgraded (12.3s)"; a summary that
/// counts a list names as many of it as the line has room for (one at
/// least) and says where the rest is.
fn step_line(
    host: &str,
    step: &nightshift_engine::event::StepReport,
    lists: Option<&str>,
) -> String {
    let line = |listed: &str| {
        format!(
            "{host}  {}: {} {}{listed} ({:.1}s)",
            step.step,
            step.status,
            step.summary,
            step.elapsed.as_secs_f64()
        )
    };
    let names: Vec<&str> = step.listed.iter().map(String::as_str).collect();
    let shortened = |few: &str, more: usize| match lists {
        Some(lists) => format!(": {few} … and {more} more; {lists}"),
        None => format!(": {few} … and {more} more"),
    };
    if names.is_empty() {
        return line("");
    }
    let whole = line(&format!(": {}", names.join(", ")));
    if whole.chars().count() <= LINE_WIDTH {
        return whole;
    }
    let bare = line(&shortened("", names.len())).chars().count();
    let (few, shown) = first_few(&names, LINE_WIDTH.saturating_sub(bare));
    line(&shortened(&few, names.len() - shown))
}

/// The live view: the run's bar and one line per host in flight.
#[derive(Default)]
struct LiveView {
    bars: MultiProgress,
    run: Option<ProgressBar>,
    hosts: HashMap<String, ProgressBar>,
}

impl LiveView {
    fn show(&mut self, event: &Event) {
        match event {
            Event::RunStarted { hosts, .. } => {
                let _ = self.bars.println(log_line(event).unwrap_or_default());
                let bar = self.bars.add(ProgressBar::new(*hosts as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} ▕{bar:20}▏ {pos}/{len} hosts  {elapsed_precise} elapsed",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("██░"),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                self.run = Some(bar);
            }
            Event::BatchStarted { batch, of, .. } => {
                if let Some(bar) = &self.run {
                    bar.set_message(format!("batch {batch}/{of}"));
                }
            }
            Event::StepStarted { host, step, .. } => {
                let bar = self.host_bar(host);
                bar.set_prefix(step.clone());
                bar.set_message("");
                bar.reset_elapsed();
            }
            Event::Progress { host, text, .. } => self.host_bar(host).set_message(text.clone()),
            Event::StepFinished { .. } => {}
            Event::HostFinished(job) => {
                if let Some(bar) = self.hosts.remove(&job.host) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                if job.status != JobStatus::Ok {
                    let _ = self.bars.println(format!(
                        "  {}  ✗ {}",
                        job.host,
                        job.error.as_deref().unwrap_or(job.status.as_str())
                    ));
                }
                if let Some(bar) = &self.run {
                    bar.inc(1);
                }
            }
            Event::Halted { .. } => {
                let _ = self.bars.println(log_line(event).unwrap_or_default());
            }
            Event::RunFinished(_) => {}
        }
    }

    fn host_bar(&mut self, host: &str) -> ProgressBar {
        self.hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "  {host:<12} {{prefix:<20}} {{wide_msg}} {{elapsed}}"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            })
            .clone()
    }

    fn finish(self) {
        for bar in self.hosts.values() {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.run {
            bar.finish_and_clear();
        }
    }
}

fn print_summary(report: &RunReport, jobs: &[JobReport], check: bool) {
    print!("{}", summary(report, jobs, check));
}

/// The table per host, the closing lines and the commands to try next.
fn summary(report: &RunReport, jobs: &[JobReport], check: bool) -> String {
    // Nothing was upgraded but a check found upgrades: the column says so.
    let would = jobs.iter().all(|j| j.updated.is_empty())
        && jobs.iter().any(|j| !j.would_update.is_empty());
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "HOST",
        "RESULT",
        if would { "WOULD UPDATE" } else { "UPDATED" },
        "REBOOT",
        "BACKUP",
        "TIME",
    ]);
    for job in jobs {
        table.add_row([
            job.host.clone(),
            job.status.to_string(),
            updated(job, would),
            job.reboot
                .map_or("—".into(), |t| format!("yes {}s", t.as_secs())),
            job.backup.as_ref().map_or("—".into(), |b| {
                format!(
                    "{} new, {:.1}s",
                    HumanBytes(b.new_bytes_stored),
                    b.elapsed.as_secs_f64()
                )
            }),
            clock(job.elapsed),
        ]);
    }
    let mut text = String::new();
    for line in table.to_string().lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(&format!("{}\n", closing_line(report)));
    if let Some(line) = would_change(jobs, check) {
        text.push_str(&format!("{line}\n"));
    }
    let next = next_commands(report, jobs);
    if !next.is_empty() {
        text.push_str(&format!("next: {}\n", next.join(" · ")));
    }
    text
}

fn next_commands(report: &RunReport, jobs: &[JobReport]) -> Vec<String> {
    let mut next = Vec::new();
    if let Some(run) = report.run {
        next.push(format!("nightshift runs show {run}"));
    } else if jobs.iter().any(|j| cut_short(&j.would_update)) {
        next.push("--json lists every package".to_string());
    }
    if jobs.iter().any(|j| j.backup.is_some()) {
        next.push("nightshift snapshots".to_string());
    }
    next
}

/// The packages cell: what was upgraded, then what a check would upgrade
/// (said as such unless the whole column is about that).
fn updated(job: &JobReport, would_column: bool) -> String {
    let mut parts = Vec::new();
    if !job.updated.is_empty() {
        parts.push(packages(&job.updated));
    }
    if !job.would_update.is_empty() {
        let would = packages(&job.would_update);
        parts.push(if would_column {
            would
        } else {
            format!("would {would}")
        });
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

/// Room for package names in a table cell, in characters.
const CELL_ROOM: usize = 20;

/// "136 packages (base-files, bash, …)"
fn packages(changes: &[nightshift_engine::event::PackageChange]) -> String {
    let (few, shown) = first_few(&names_of(changes), CELL_ROOM);
    format!(
        "{} package{} ({few}{})",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        if shown < changes.len() { ", …" } else { "" }
    )
}

/// Whether the cell leaves some of the packages out.
fn cut_short(changes: &[nightshift_engine::event::PackageChange]) -> bool {
    first_few(&names_of(changes), CELL_ROOM).1 < changes.len()
}

fn names_of(changes: &[nightshift_engine::event::PackageChange]) -> Vec<&str> {
    changes.iter().map(|c| c.name.as_str()).collect()
}

/// The first of `names` that fit in `room` characters (at least one),
/// joined, and how many that is.
fn first_few(names: &[&str], room: usize) -> (String, usize) {
    let mut text = String::new();
    let mut shown = 0;
    for name in names {
        let width = name.chars().count() + if shown == 0 { 0 } else { 2 };
        if shown > 0 && text.chars().count() + width > room {
            break;
        }
        if shown > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
        shown += 1;
    }
    (text, shown)
}

/// What a check found it would change, in one line: "check mode: nothing
/// changed; would update 136 packages (12 security) on 1 host".
fn would_change(jobs: &[JobReport], check: bool) -> Option<String> {
    let hosts = jobs.iter().filter(|j| !j.would_update.is_empty()).count();
    let packages: Vec<&nightshift_engine::event::PackageChange> =
        jobs.iter().flat_map(|j| &j.would_update).collect();
    let update = format!(
        "would update {} package{} ({} security) on {hosts} host{}",
        packages.len(),
        if packages.len() == 1 { "" } else { "s" },
        packages.iter().filter(|p| p.security).count(),
        if hosts == 1 { "" } else { "s" }
    );
    match (check, hosts) {
        (true, 0) => Some("check mode: nothing changed".into()),
        (true, _) => Some(format!("check mode: nothing changed; {update}")),
        (false, 0) => None,
        (false, _) => Some(format!("{update}: checked, not applied")),
    }
}

fn clock(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// "run 418 halted: 2 failures > max 1 (...) · nightshift runs show 418"
fn closing_line(report: &RunReport) -> String {
    let who = report
        .run
        .map_or_else(|| report.playbook.clone(), |r| format!("run {r}"));
    let what = match &report.halted_because {
        Some(reason) => format!("{}: {reason}", report.status),
        None => format!(
            "{}: {} ok, {} failed{}{} in {}",
            report.status,
            report.ok,
            report.failed,
            if report.deferred > 0 {
                format!(", {} deferred to their window", report.deferred)
            } else {
                String::new()
            },
            if report.skipped > 0 {
                format!(", {} not started", report.skipped)
            } else {
                String::new()
            },
            clock(report.elapsed)
        ),
    };
    format!("{who} {what}")
}

#[cfg(test)]
mod tests {
    use nightshift_catalog::RunStatus;
    use nightshift_engine::event::{BackupReport, PackageChange, StepKind, StepReport, StepStatus};

    use super::*;

    const FIRST: [&str; 6] = [
        "base-files",
        "bash",
        "ca-certificates",
        "libssl3",
        "linux-image-amd64",
        "openssh-client",
    ];

    /// `count` packages as an upgrade lists them, every tenth a security
    /// update.
    fn changes(count: usize) -> Vec<PackageChange> {
        (0..count)
            .map(|i| PackageChange {
                name: FIRST
                    .get(i)
                    .map_or_else(|| format!("libexample{i}"), |n| n.to_string()),
                from: Some("1.0-1".into()),
                to: Some("1.0-1+deb12u1".into()),
                security: i % 10 == 0,
            })
            .collect()
    }

    fn update_step(status: StepStatus, summary: &str, listed: &[PackageChange]) -> StepReport {
        StepReport {
            step: "pending updates".into(),
            kind: StepKind::Update,
            status,
            changed: status == StepStatus::Ok,
            attempts: 1,
            summary: summary.into(),
            listed: listed.iter().map(|p| p.name.clone()).collect(),
            reboot_required: false,
            error_kind: None,
            elapsed: Duration::from_millis(2_140),
        }
    }

    fn job(host: &str, steps: Vec<StepReport>) -> JobReport {
        let mut job = JobReport::new(host, 1, JobStatus::Ok);
        job.steps = steps;
        job.elapsed = Duration::from_secs(75);
        job
    }

    fn report(run: Option<i64>, jobs: &[JobReport]) -> RunReport {
        let failed = jobs.iter().filter(|j| j.failed()).count();
        RunReport {
            run,
            playbook: "web-patch".into(),
            status: if failed == 0 {
                RunStatus::Ok
            } else {
                RunStatus::Failed
            },
            halted_because: None,
            hosts: jobs.len(),
            ok: jobs.len() - failed,
            failed,
            skipped: 0,
            deferred: 0,
            elapsed: Duration::from_secs(81),
        }
    }

    /// What a person reads: the step lines (piped) and the closing table.
    fn shown(run: Option<i64>, jobs: &[JobReport], check: bool) -> String {
        let lists = where_listed(run);
        let mut text = String::new();
        for job in jobs {
            for step in &job.steps {
                text.push_str(&step_line(&job.host, step, Some(&lists)));
                text.push('\n');
            }
        }
        text.push('\n');
        text.push_str(&summary(&report(run, jobs), jobs, check));
        text
    }

    /// A host whose update step, in check mode, found `count` upgrades.
    fn would(host: &str, count: usize) -> JobReport {
        let pending = changes(count);
        let security = pending.iter().filter(|p| p.security).count();
        let summary = format!("would upgrade {count} packages ({security} security)");
        let step = update_step(StepStatus::Skipped, &summary, &pending);
        let mut job = job(host, vec![step]);
        job.would_update = pending;
        job
    }

    /// A host whose update step upgraded `count` packages.
    fn upgraded(host: &str, count: usize, summary: &str) -> JobReport {
        let mut job = job(host, vec![update_step(StepStatus::Ok, summary, &[])]);
        job.updated = changes(count);
        job
    }

    /// A check of two hosts, one with 150 pending packages.
    fn checked() -> Vec<JobReport> {
        vec![would("web1", 150), would("web2", 2)]
    }

    #[test]
    fn a_check_reads_like_a_plan() {
        let text = shown(None, &checked(), true);
        assert!(!text.contains("UPDATED"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_check_step_in_a_recorded_run_points_at_the_record() {
        let mut jobs = checked();
        jobs.truncate(1);
        jobs[0].backup = Some(BackupReport {
            snapshot: "4f1c9a2e".into(),
            files: 212,
            bytes_read: 1_342_177,
            new_bytes_stored: 401_113,
            elapsed: Duration::from_millis(820),
        });
        insta::assert_snapshot!(shown(Some(7), &jobs, false));
    }

    #[test]
    fn a_run_that_upgraded_says_updated() {
        let web1 = upgraded("web1", 150, "150 upgraded");
        let mut web2 = upgraded("web2", 1, "1 upgraded, reboot required");
        web2.reboot = Some(Duration::from_secs(48));
        let mut web3 = job(
            "web3",
            vec![update_step(
                StepStatus::Failed,
                "exit 100; 110 of 150 upgraded, 40 not at the new version",
                &changes(150)[110..],
            )],
        );
        web3.status = JobStatus::Failed;
        web3.updated = changes(110);
        insta::assert_snapshot!(shown(Some(12), &[web1, web2, web3], false));
    }

    #[test]
    fn every_line_fits_a_wide_terminal() {
        for text in [
            shown(None, &checked(), true),
            shown(Some(7), &checked(), false),
        ] {
            for line in text.lines() {
                assert!(line.chars().count() <= LINE_WIDTH, "too long: {line}");
            }
        }
    }

    #[test]
    fn a_long_first_name_is_shown_whole() {
        let names = ["a-very-long-package-name-indeed", "bash"];
        assert_eq!(
            first_few(&names, 10),
            ("a-very-long-package-name-indeed".to_string(), 1)
        );
        assert_eq!(first_few(&names[1..], 10), ("bash".to_string(), 1));
        assert_eq!(first_few(&[], 10), (String::new(), 0));
    }
}
