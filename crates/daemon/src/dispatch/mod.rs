//! The daemon's work at each tick: start runs for due fires, for trigger
//! requests and for deferred hosts whose window opened; drain and cancel
//! runs whose window closed; reap finished runs and notify. Time comes only
//! from the injected clock, so tests can drive it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_catalog::{Catalog, FireOutcome, JobStatus, RunId, RunStatus, TriggerState};
use nightshift_engine::event::{Event, JobReport, RunReport};
use nightshift_engine::launch::{self, Launch};
use nightshift_engine::rollout::{self, Rollout};
use nightshift_engine::stop::{Closing, Stop, StopKind};
use nightshift_plan::Plan;
use nightshift_scheduler::{Clock, Phase, Schedule, entries, phase};
use tokio::sync::Semaphore;

use nightshift_controller::Settings;
use nightshift_engine::line::log_line;

use crate::DaemonError;
use crate::error::said;
use crate::notify::{Notice, NoticeHost, NoticeKind, Notifier};

mod deferred;
mod fires;
mod triggers;

/// A fire older than this when the daemon first sees it was missed (the
/// daemon was down or stalled), and the catch-up policy decides.
const LATE_AFTER: TimeDelta = TimeDelta::minutes(2);

/// How often deferred hosts are looked at: windows open on the minute.
const DEFERRED_EVERY: TimeDelta = TimeDelta::seconds(30);

/// What a run was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Schedule(String),
    Trigger(i64),
    /// Hosts deferred by earlier runs, now inside their own window.
    Deferred,
}

impl Origin {
    /// What `runs.schedule` records.
    fn label(&self) -> String {
        match self {
            Self::Schedule(key) => key.clone(),
            Self::Trigger(id) => format!("trigger:{id}"),
            Self::Deferred => "deferred".into(),
        }
    }
}

/// The window a run must end in.
#[derive(Debug, Clone)]
pub struct RunWindow {
    pub name: String,
    pub closes: DateTime<Utc>,
    /// The close as its zone reads it, for messages.
    pub shown: String,
}

impl RunWindow {
    fn new<Z: chrono::TimeZone>(name: &str, closes: DateTime<Z>) -> Self
    where
        Z::Offset: std::fmt::Display,
    {
        Self {
            name: name.to_string(),
            shown: closes.format("%Y-%m-%d %H:%M %Z").to_string(),
            closes: closes.to_utc(),
        }
    }
}

/// A run the daemon is to start.
#[derive(Debug, Clone)]
struct Start {
    playbook: String,
    limit: Option<String>,
    host_windows: bool,
    window: Option<RunWindow>,
    origin: Origin,
    /// Who asked for it, for a trigger request.
    operator: Option<String>,
}

/// A run of the daemon's, in progress.
#[derive(Debug)]
pub struct Active {
    pub playbook: String,
    pub origin: Origin,
    pub window: Option<RunWindow>,
    pub stop: Stop,
    /// Its hosts, so a pickup of deferred hosts leaves them to it.
    hosts: Vec<String>,
    /// The catalog's id, once the run is recorded.
    run: Arc<std::sync::Mutex<Option<RunId>>>,
    overrun_noticed: bool,
    task: tokio::task::JoinHandle<Followed>,
}

impl Active {
    fn run_id(&self) -> Option<RunId> {
        *self.run.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Followed = Result<(RunReport, Vec<JobReport>), DaemonError>;

/// The daemon's state between ticks.
pub struct Daemon {
    pub settings: Settings,
    pub plan: Plan,
    pub entries: Vec<Schedule>,
    pub catalog: Catalog,
    clock: Arc<dyn Clock>,
    fleet_slots: Arc<Semaphore>,
    fleet_size: usize,
    notifier: Notifier,
    /// Up to when each schedule's fires were looked at.
    cursors: BTreeMap<String, DateTime<Utc>>,
    pub runs: Vec<Active>,
    last_prune: Option<DateTime<Utc>>,
    last_deferred: Option<DateTime<Utc>>,
    /// Problems already logged, so a stuck request is not logged each tick.
    said: HashSet<String>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("schedules", &self.entries.len())
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl Daemon {
    pub fn new(
        settings: Settings,
        plan: Plan,
        catalog: Catalog,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DaemonError> {
        let notifier = Notifier::new(&settings.config.notify)?;
        let fleet_size = fleet_size(&settings)?;
        Ok(Self {
            fleet_slots: Arc::new(Semaphore::new(fleet_size)),
            fleet_size,
            entries: entries(&plan),
            settings,
            plan,
            catalog,
            clock,
            notifier,
            cursors: BTreeMap::new(),
            runs: Vec::new(),
            last_prune: None,
            last_deferred: None,
            said: HashSet::new(),
        })
    }

    /// Takes a new, validated configuration. Runs in progress keep the
    /// plan they started with, and share the new bound on hosts. A
    /// schedule new to this configuration starts counting its fires now,
    /// even if an earlier configuration had it.
    pub async fn replace(&mut self, settings: Settings, plan: Plan) -> Result<(), DaemonError> {
        let notifier = Notifier::new(&settings.config.notify)?;
        let size = fleet_size(&settings)?;
        self.resize_fleet(size);
        let before: HashSet<String> = self.entries.iter().map(|e| e.key.clone()).collect();
        self.notifier = notifier;
        self.entries = entries(&plan);
        self.settings = settings;
        self.plan = plan;
        self.said.clear();
        self.cursors.retain(|key, _| before.contains(key));
        let now = self.clock.now();
        for entry in self.entries.iter().filter(|e| !before.contains(&e.key)) {
            self.cursors.insert(entry.key.clone(), now);
            if let Err(err) = self.catalog.record_fires(&entry.key, now, &[]).await {
                tracing::warn!(%err, "cannot record a new schedule's cursor");
            }
        }
        Ok(())
    }

    /// Grows or shrinks the bound on hosts at once, for every run.
    fn resize_fleet(&mut self, size: usize) {
        if size > self.fleet_size {
            self.fleet_slots.add_permits(size - self.fleet_size);
        } else if size < self.fleet_size {
            let less = self.fleet_size - size;
            let gone = self.fleet_slots.forget_permits(less);
            if gone < less {
                // The rest are in use: take them as they come free.
                let slots = self.fleet_slots.clone();
                let rest = u32::try_from(less - gone).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(permits) = slots.acquire_many_owned(rest).await {
                        permits.forget();
                    }
                });
            }
        }
        self.fleet_size = size;
    }

    fn grace(&self) -> TimeDelta {
        TimeDelta::from_std(self.settings.config.daemon.grace.0).unwrap_or(TimeDelta::MAX)
    }

    /// One look at the world.
    pub async fn tick(&mut self) {
        let now = self.clock.now();
        self.reap().await;
        self.window_phases(now);
        self.fires(now).await;
        self.triggers(now).await;
        self.deferred(now).await;
        self.prune(now).await;
    }

    /// Drains every run for a reason; they start nothing new.
    pub fn drain_all(&self, kind: StopKind, reason: &str) {
        for active in &self.runs {
            active.stop.drain(kind, reason);
        }
    }

    /// Cancels what every run still has in flight.
    pub fn cancel_all(&self, kind: StopKind, reason: &str) {
        for active in &self.runs {
            active.stop.cancel(kind, reason);
        }
    }

    /// Collects finished runs, and notifies about how they ended.
    pub async fn reap(&mut self) {
        let (done, going): (Vec<Active>, Vec<Active>) = std::mem::take(&mut self.runs)
            .into_iter()
            .partition(|a| a.task.is_finished());
        self.runs = going;
        for active in done {
            let run = active.run_id();
            let origin = active.origin.clone();
            match active.task.await {
                Ok(Ok((report, jobs))) => {
                    if let (None, Origin::Trigger(id)) = (report.run, &origin) {
                        let why = report.halted_because.clone().unwrap_or_default();
                        self.set_trigger(*id, TriggerState::Refused, Some(&why))
                            .await;
                    }
                    self.ended(&active.window, &report, &jobs);
                }
                Ok(Err(err)) => {
                    tracing::error!(playbook = active.playbook, "a run failed: {}", said(&err));
                    self.abandon(run).await;
                }
                Err(err) => {
                    tracing::error!(playbook = active.playbook, %err, "a run's task died");
                    self.abandon(run).await;
                }
            }
        }
    }

    /// A run whose task died: recorded as interrupted, leases given back.
    async fn abandon(&self, run: Option<RunId>) {
        let Some(run) = run else { return };
        if let Err(err) = self.catalog.abandon_run(run, Utc::now()).await {
            tracing::error!(%err, run = run.0, "cannot record the end of a run whose task died");
        }
    }

    fn ended(&self, window: &Option<RunWindow>, report: &RunReport, jobs: &[JobReport]) {
        tracing::info!(
            run = report.run,
            playbook = report.playbook,
            status = %report.status,
            ok = report.ok,
            failed = report.failed,
            deferred = report.deferred,
            "run ended"
        );
        let notice = |kind, picked: &dyn Fn(&JobReport) -> bool| {
            let mut notice = Notice::new(kind, &report.playbook, report.status.as_str());
            notice.run = report.run;
            notice.reason.clone_from(&report.halted_because);
            notice.window = window.as_ref().map(|w| w.name.clone());
            notice.hosts = jobs.iter().filter(|j| picked(j)).map(noticed).collect();
            notice
        };
        match report.status {
            RunStatus::Failed => self
                .notifier
                .send(notice(NoticeKind::RunFailed, &|j: &JobReport| j.failed())),
            RunStatus::Halted => self.notifier.send(notice(NoticeKind::RunHalted, &|j| {
                j.status != JobStatus::Ok
            })),
            _ => {}
        }
        if report.deferred > 0 {
            self.notifier.send(notice(NoticeKind::HostsDeferred, &|j| {
                j.status == JobStatus::Deferred
            }));
        }
    }

    /// A window that closes on a run still going is told once. (The
    /// engine itself drains the run at the close and cancels it after the
    /// grace period.)
    fn window_phases(&mut self, now: DateTime<Utc>) {
        let grace = self.grace();
        for active in &mut self.runs {
            let Some(window) = &active.window else {
                continue;
            };
            if active.overrun_noticed || phase(window.closes, grace, now) == Phase::Open {
                continue;
            }
            active.overrun_noticed = true;
            let reason = format!("the window {} closed at {}", window.name, window.shown);
            tracing::warn!(
                playbook = active.playbook,
                "{reason} with the run still going; no new host starts, steps in flight have the grace period to finish"
            );
            let mut notice = Notice::new(NoticeKind::WindowOverrun, &active.playbook, "running");
            notice.run = active.run_id().map(|r| r.0);
            notice.window = Some(window.name.clone());
            notice.reason = Some(reason);
            self.notifier.send(notice);
        }
    }

    /// The daily pass that drops steps' full output past its retention.
    async fn prune(&mut self, now: DateTime<Utc>) {
        if self
            .last_prune
            .is_some_and(|at| now - at < TimeDelta::days(1))
        {
            return;
        }
        self.last_prune = Some(now);
        let keep = TimeDelta::from_std(self.settings.config.catalog.output_retention.0)
            .unwrap_or(TimeDelta::MAX);
        let before = now
            .checked_sub_signed(keep)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self.catalog.prune_output(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "catalog: dropped the full output of {n} steps older than the retention period"
            ),
            Err(err) => tracing::warn!(%err, "the daily catalog prune failed"),
        }
    }

    fn say_once(&mut self, text: String) {
        if self.said.insert(text.clone()) {
            tracing::warn!("{text}");
        }
    }

    /// Everything a run needs, checked before anything is recorded.
    fn prepare(&self, start: &Start) -> Result<Rollout, DaemonError> {
        let origin = match &start.origin {
            Origin::Schedule(key) => launch::Origin::Schedule {
                key: key.clone(),
                fire: None,
            },
            Origin::Trigger(request) => launch::Origin::Trigger {
                request: *request,
                operator: start.operator.clone().unwrap_or_default(),
            },
            Origin::Deferred => launch::Origin::Deferred,
        };
        let ssh = self.settings.ssh_config()?;
        let grace = self.settings.config.daemon.grace.0;
        let mut launch = Launch::new(&self.plan, &start.playbook, origin, ssh)?
            .limit(start.limit.as_deref())
            .host_windows(start.host_windows)
            .forks(self.settings.config.ssh.forks)
            .catalog(self.catalog.clone())
            .clock(self.clock.clone())
            .fleet_slots(self.fleet_slots.clone())
            .grace(grace);
        if let Some(window) = &start.window {
            let closing = Closing {
                closes: window.closes,
                grace,
                reason: format!("the window {} closed at {}", window.name, window.shown),
            };
            launch = launch.window(&window.name, closing);
        }
        if launch.needs_store() {
            let (store, generated_key) = self.settings.store_access()?;
            if let Some(key) = generated_key {
                tracing::warn!(
                    "created an ENCRYPTED store at {} with its key in {}: KEEP A COPY of the key away from this machine (`nightshift store key export` prints it)",
                    store.root.display(),
                    key.display()
                );
            }
            launch = launch.store(store);
        }
        Ok(launch.build()?)
    }

    fn spawn(&mut self, start: Start, rollout: Rollout) {
        tracing::info!(
            playbook = start.playbook,
            origin = start.origin.label(),
            window = start.window.as_ref().map(|w| w.name.as_str()),
            hosts = rollout.hosts().count(),
            "starting a run"
        );
        let stop = rollout.stop();
        let hosts = rollout.hosts().map(str::to_string).collect();
        let run = Arc::new(std::sync::Mutex::new(None));
        let known = run.clone();
        let task = tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let work = tokio::spawn(rollout::run(rollout, tx));
            let jobs = follow(rx, &known).await;
            let report = work.await?;
            Ok((report, jobs))
        });
        self.runs.push(Active {
            playbook: start.playbook,
            origin: start.origin,
            window: start.window,
            stop,
            hosts,
            run,
            overrun_noticed: false,
            task,
        });
    }
}

/// Why a due fire did not become a run.
enum NotStarted {
    Busy,
    Broken(DaemonError),
}

impl NotStarted {
    fn record(self, fire: DateTime<Utc>) -> (DateTime<Utc>, FireOutcome, Option<String>) {
        match self {
            Self::Busy => (
                fire,
                FireOutcome::Busy,
                Some("the run for an earlier fire is still going".into()),
            ),
            Self::Broken(err) => (
                fire,
                FireOutcome::Missed,
                Some(format!("cannot start: {}", said(&err))),
            ),
        }
    }
}

/// The first of `windows` open at `now`, with its close.
fn open_window<'a>(
    windows: impl IntoIterator<Item = (&'a str, &'a nightshift_plan::window::WindowRule)>,
    now: DateTime<Utc>,
) -> Option<RunWindow> {
    windows.into_iter().find_map(|(name, rule)| {
        let opening = rule.next_opening(&now).filter(|o| o.open <= now)?;
        Some(RunWindow::new(name, opening.close))
    })
}

/// `[daemon] max_hosts`, within what a semaphore can count.
fn fleet_size(settings: &Settings) -> Result<usize, DaemonError> {
    let size = settings.config.daemon.max_hosts;
    if !(1..=100_000).contains(&size) {
        return Err(DaemonError::MaxHosts(size));
    }
    Ok(size)
}

/// Logs a run's events and notes its id once it is recorded; returns the
/// finished jobs.
async fn follow(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    run: &std::sync::Mutex<Option<RunId>>,
) -> Vec<JobReport> {
    let mut jobs = Vec::new();
    while let Some(event) = rx.recv().await {
        if let Event::RunStarted { run: Some(id), .. } = &event {
            *run.lock().unwrap_or_else(|e| e.into_inner()) = Some(RunId(*id));
        }
        if let Some(line) = log_line(&event) {
            tracing::info!("{line}");
        }
        if let Event::HostFinished(job) = event {
            jobs.push(job);
        }
    }
    jobs
}

fn noticed(job: &JobReport) -> NoticeHost {
    NoticeHost {
        host: job.host.clone(),
        status: job.status.to_string(),
        error: job.error.clone(),
    }
}
