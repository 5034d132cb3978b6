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
    while let Some(event) = rx.recv().await {
        if json {
            if let Ok(line) = serde_json::to_string(&event) {
                println!("{line}");
            }
        } else if let Some(view) = &mut view {
            view.show(&event);
        } else if let Some(line) = log_line(&event) {
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

pub(crate) fn log_line(event: &Event) -> Option<String> {
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
        Event::StepFinished { host, step } => format!(
            "{host}  {}: {} {} ({:.1}s)",
            step.step,
            step.status,
            step.summary,
            step.elapsed.as_secs_f64()
        ),
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
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["HOST", "RESULT", "UPDATED", "REBOOT", "BACKUP", "TIME"]);
    for job in jobs {
        table.add_row([
            job.host.clone(),
            job.status.to_string(),
            updated(job, check),
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
    println!("{table}");
    println!("{}", closing_line(report));
    let mut next = Vec::new();
    if let Some(run) = report.run {
        next.push(format!("nightshift runs show {run}"));
    }
    if jobs.iter().any(|j| j.backup.is_some()) {
        next.push("nightshift snapshots".to_string());
    }
    if !next.is_empty() {
        println!("next: {}", next.join(" · "));
    }
}

fn updated(job: &JobReport, check: bool) -> String {
    if job.updated.is_empty() {
        return "—".into();
    }
    let first = &job.updated[0];
    let mut text = format!(
        "{} {} → {}",
        first.name,
        first.from.as_deref().unwrap_or("(new)"),
        first.to.as_deref().unwrap_or("?")
    );
    if job.updated.len() > 1 {
        text.push_str(&format!(" +{}", job.updated.len() - 1));
    }
    if check {
        text.push_str(" (would)");
    }
    text
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
