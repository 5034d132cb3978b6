//! The daemon's work at each tick: start runs for due fires, for trigger
//! requests and for deferred hosts whose window opened; drain and cancel
//! runs whose window closed; reap finished runs and notify. Time comes only
//! from the injected clock, so tests can drive it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_catalog::{
    Catalog, DeferredHost, FireOutcome, FireRecord, JobStatus, RunId, RunStatus, Trigger,
    TriggerRow, TriggerState,
};
use nightshift_engine::event::{Event, JobReport, RunReport};
use nightshift_engine::rollout::{self, Rollout};
use nightshift_engine::stop::{Stop, StopKind};
use nightshift_plan::Plan;
use nightshift_scheduler::{Clock, Decision, Entry, Phase, due, entries, phase};
use tokio::sync::Semaphore;

use super::notify::{Notice, NoticeHost, NoticeKind, Notifier};
use crate::run::{find_playbook, log_line, needs_store, rollout_targets, store_access};
use crate::settings::Settings;

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
struct Launch {
    playbook: String,
    limit: Option<String>,
    host_windows: bool,
    window: Option<RunWindow>,
    origin: Origin,
    trigger: Trigger,
    operator: Option<String>,
    fire: Option<i64>,
}

/// A run of the daemon's, in progress.
#[derive(Debug)]
pub struct Active {
    pub playbook: String,
    pub origin: Origin,
    pub window: Option<RunWindow>,
    pub stop: Stop,
    task: tokio::task::JoinHandle<Followed>,
}

type Followed = anyhow::Result<(RunReport, Vec<JobReport>)>;

/// The daemon's state between ticks.
pub struct Daemon {
    pub settings: Settings,
    pub plan: Plan,
    pub entries: Vec<Entry>,
    pub catalog: Catalog,
    clock: Arc<dyn Clock>,
    fleet_slots: Arc<Semaphore>,
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
    ) -> anyhow::Result<Self> {
        let notifier = Notifier::new(&settings.config.notify)?;
        Ok(Self {
            fleet_slots: Arc::new(Semaphore::new(settings.config.daemon.max_hosts.max(1))),
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
    /// plan they started with.
    pub fn replace(&mut self, settings: Settings, plan: Plan) -> anyhow::Result<()> {
        self.notifier = Notifier::new(&settings.config.notify)?;
        if settings.config.daemon.max_hosts != self.settings.config.daemon.max_hosts {
            self.fleet_slots = Arc::new(Semaphore::new(settings.config.daemon.max_hosts.max(1)));
        }
        self.entries = entries(&plan);
        self.settings = settings;
        self.plan = plan;
        self.said.clear();
        Ok(())
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
            match active.task.await {
                Ok(Ok((report, jobs))) => self.ended(&active.window, &report, &jobs),
                Ok(Err(err)) => {
                    tracing::error!(playbook = active.playbook, "a run failed: {err:#}")
                }
                Err(err) => tracing::error!(playbook = active.playbook, %err, "a run's task died"),
            }
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

    /// Runs whose window closed drain; after the grace period, they are
    /// cancelled.
    fn window_phases(&self, now: DateTime<Utc>) {
        let grace = self.grace();
        for active in &self.runs {
            let Some(window) = &active.window else {
                continue;
            };
            let reason = format!("the window {} closed at {}", window.name, window.shown);
            match phase(window.closes, grace, now) {
                Phase::Open => {}
                Phase::Draining if active.stop.draining().is_none() => {
                    tracing::warn!(
                        playbook = active.playbook,
                        "{reason}; no new host starts, steps in flight have the grace period to finish"
                    );
                    active.stop.drain(StopKind::WindowClosed, &reason);
                    let mut notice =
                        Notice::new(NoticeKind::WindowOverrun, &active.playbook, "running");
                    notice.window = Some(window.name.clone());
                    notice.reason = Some(reason);
                    self.notifier.send(notice);
                }
                Phase::Cancel if !active.stop.is_cancelled() => {
                    tracing::warn!(
                        playbook = active.playbook,
                        "{reason} and the grace period is over; cancelling steps in flight"
                    );
                    active.stop.cancel(StopKind::WindowClosed, &reason);
                }
                Phase::Draining | Phase::Cancel => {}
            }
        }
    }

    /// Fires due since the last look: started, or recorded as missed or
    /// busy.
    async fn fires(&mut self, now: DateTime<Utc>) {
        for entry in self.entries.clone() {
            let Some(since) = self.cursor(&entry.key, now).await else {
                continue;
            };
            self.cursors.insert(entry.key.clone(), now.max(since));
            let policy = entry
                .catch_up
                .unwrap_or(self.settings.config.daemon.catch_up);
            let decisions = due(&entry, since, now, LATE_AFTER, policy);
            if !decisions.is_empty() {
                self.decide(&entry, decisions, now).await;
            }
        }
    }

    /// Where a schedule's fires were last looked at; a schedule seen for the
    /// first time starts from now (it has no past to catch up on).
    async fn cursor(&mut self, key: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Some(at) = self.cursors.get(key) {
            return Some(*at);
        }
        match self.catalog.schedule_cursor(key).await {
            Ok(Some(at)) => Some(at),
            Ok(None) => {
                if let Err(err) = self.catalog.record_fires(key, now, &[]).await {
                    tracing::warn!(%err, "cannot record a schedule's cursor");
                }
                self.cursors.insert(key.to_string(), now);
                None
            }
            Err(err) => {
                tracing::warn!(%err, "cannot read a schedule's cursor; looking again next tick");
                None
            }
        }
    }

    async fn decide(&mut self, entry: &Entry, decisions: Vec<Decision>, now: DateTime<Utc>) {
        let mut records = Vec::new();
        let mut start = None;
        for decision in decisions {
            let (fire, outcome, detail) = match decision {
                Decision::Start {
                    fire,
                    window_closes,
                    caught_up,
                    ..
                } => {
                    let outcome = if caught_up {
                        FireOutcome::CaughtUp
                    } else {
                        FireOutcome::Started
                    };
                    match self.schedule_launch(entry, window_closes) {
                        Err(busy_or_broken) => busy_or_broken.record(fire),
                        Ok((launch, rollout)) => {
                            start = Some((records.len(), launch, rollout));
                            (fire, outcome, None)
                        }
                    }
                }
                Decision::Missed { fire, why, .. } => {
                    (fire, FireOutcome::Missed, Some(why.to_string()))
                }
                Decision::MissedMore {
                    after, before, why, ..
                } => (
                    before,
                    FireOutcome::Missed,
                    Some(format!(
                        "{why}; so was every fire from {} to {}",
                        after.format("%Y-%m-%d %H:%M UTC"),
                        before.format("%Y-%m-%d %H:%M UTC")
                    )),
                ),
            };
            if outcome == FireOutcome::Missed {
                tracing::warn!(playbook = entry.playbook, fire = %fire, "missed: {}", detail.as_deref().unwrap_or(""));
            }
            records.push(FireRecord {
                schedule: &entry.key,
                playbook: &entry.playbook,
                fire,
                outcome,
                detail,
            });
        }
        let ids = match self.catalog.record_fires(&entry.key, now, &records).await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "cannot record the schedule's fires; the run starts anyway");
                Vec::new()
            }
        };
        if let Some((index, mut launch, rollout)) = start {
            launch.fire = ids.get(index).copied();
            self.spawn(launch, rollout);
        }
    }

    /// The run for a schedule's fire, unless the previous one still runs.
    fn schedule_launch(
        &self,
        entry: &Entry,
        window_closes: DateTime<Utc>,
    ) -> Result<(Launch, Rollout), NotStarted> {
        let origin = Origin::Schedule(entry.key.clone());
        if self.runs.iter().any(|a| a.origin == origin) {
            return Err(NotStarted::Busy);
        }
        let launch = Launch {
            playbook: entry.playbook.clone(),
            limit: None,
            host_windows: true,
            window: Some(RunWindow::new(
                &entry.window_name,
                window_closes.with_timezone(&entry.window.timezone),
            )),
            origin,
            trigger: Trigger::Schedule,
            operator: None,
            fire: None,
        };
        let rollout = self.prepare(&launch).map_err(NotStarted::Broken)?;
        Ok((launch, rollout))
    }

    /// Trigger requests: started when their window is open (or ignored),
    /// waiting otherwise, refused when they cannot run at all.
    async fn triggers(&mut self, now: DateTime<Utc>) {
        let requests = match self.catalog.open_triggers().await {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(%err, "cannot read trigger requests");
                return;
            }
        };
        for request in requests {
            self.trigger(request, now).await;
        }
    }

    async fn trigger(&mut self, request: TriggerRow, now: DateTime<Utc>) {
        let window = if request.ignore_window {
            None
        } else {
            match self.trigger_window(&request.playbook, now) {
                Ok(window) => window,
                Err(closed) => {
                    if request.state != "waiting" || request.detail.as_deref() != Some(&closed) {
                        tracing::info!(request = request.id, "{closed}");
                        self.set_trigger(request.id, TriggerState::Waiting, Some(&closed))
                            .await;
                    }
                    return;
                }
            }
        };
        let launch = Launch {
            playbook: request.playbook.clone(),
            limit: request.host_limit.clone(),
            host_windows: !request.ignore_window,
            window,
            origin: Origin::Trigger(request.id),
            trigger: Trigger::Manual,
            operator: Some(request.requested_by.clone()),
            fire: None,
        };
        match self.prepare(&launch) {
            Ok(rollout) => {
                self.set_trigger(request.id, TriggerState::Started, None)
                    .await;
                self.spawn(launch, rollout);
            }
            Err(err) => {
                let why = format!("{err:#}");
                tracing::warn!(request = request.id, "refused: {why}");
                self.set_trigger(request.id, TriggerState::Refused, Some(&why))
                    .await;
            }
        }
    }

    async fn set_trigger(&self, id: i64, state: TriggerState, detail: Option<&str>) {
        if let Err(err) = self.catalog.update_trigger(id, state, detail, None).await {
            tracing::warn!(%err, "cannot record a trigger request's state");
        }
    }

    /// The window a triggered run keeps: one of the playbook's schedule
    /// windows that is open now; no window when no schedule names the
    /// playbook; `Err` saying when it opens when all are closed.
    fn trigger_window(
        &self,
        playbook: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<RunWindow>, String> {
        let mine: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.playbook == playbook)
            .collect();
        if mine.is_empty() {
            return Ok(None);
        }
        if let Some((entry, opening)) = mine
            .iter()
            .filter_map(|e| Some((e, e.window.next_opening(&now)?)))
            .find(|(_, o)| o.open <= now)
        {
            return Ok(Some(RunWindow::new(&entry.window_name, opening.close)));
        }
        let next = mine
            .iter()
            .filter_map(|e| Some((e, e.window.next_opening(&now)?.open)))
            .min_by_key(|(_, open)| open.to_utc());
        Err(match next {
            Some((entry, open)) => format!(
                "waiting: the window {} is closed; it opens at {} (--ignore-window --reason … runs it now)",
                entry.window_name,
                open.format("%Y-%m-%d %H:%M %Z")
            ),
            None => "waiting: the playbook's windows never open".into(),
        })
    }

    /// Hosts deferred to their own window whose window is open now get a
    /// run of their own, one per playbook at a time.
    async fn deferred(&mut self, now: DateTime<Utc>) {
        if self
            .last_deferred
            .is_some_and(|at| now - at < DEFERRED_EVERY)
        {
            return;
        }
        self.last_deferred = Some(now);
        let waiting = match self.catalog.deferred_hosts().await {
            Ok(hosts) => hosts,
            Err(err) => {
                tracing::warn!(%err, "cannot read deferred hosts");
                return;
            }
        };
        let mut by_playbook: BTreeMap<String, Vec<DeferredHost>> = BTreeMap::new();
        for host in waiting {
            by_playbook
                .entry(host.playbook.clone())
                .or_default()
                .push(host);
        }
        for (playbook, hosts) in by_playbook {
            if self.runs.iter().any(|a| a.playbook == playbook) {
                continue;
            }
            if let Some(launch) = self.deferred_launch(&playbook, &hosts, now) {
                match self.prepare(&launch) {
                    Ok(rollout) => self.spawn(launch, rollout),
                    Err(err) => self.say_once(format!(
                        "cannot pick up the hosts deferred from {playbook}: {err:#}"
                    )),
                }
            }
        }
    }

    fn deferred_launch(
        &self,
        playbook: &str,
        hosts: &[DeferredHost],
        now: DateTime<Utc>,
    ) -> Option<Launch> {
        let mut windows = Vec::new();
        let mut ready = Vec::new();
        for host in hosts {
            match self.plan.host_window(&host.host) {
                Some((name, rule)) => {
                    if let Some(opening) = rule.next_opening(&now).filter(|o| o.open <= now) {
                        windows.push(RunWindow::new(&name, opening.close));
                        ready.push(host.host.clone());
                    }
                }
                // Its window is gone from the inventory: nothing keeps it.
                None => ready.push(host.host.clone()),
            }
        }
        if ready.is_empty() {
            return None;
        }
        let window = windows.into_iter().min_by_key(|w| w.closes);
        Some(Launch {
            playbook: playbook.to_string(),
            limit: Some(ready.join(",")),
            host_windows: true,
            window,
            origin: Origin::Deferred,
            trigger: Trigger::Schedule,
            operator: None,
            fire: None,
        })
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
    fn prepare(&self, launch: &Launch) -> anyhow::Result<Rollout> {
        let playbook = find_playbook(&self.plan, &launch.playbook)?;
        let targets = rollout_targets(
            &self.plan,
            &playbook,
            launch.limit.as_deref(),
            launch.host_windows,
        )?;
        let ssh = self.settings.ssh_config(&self.plan.inventory())?;
        let store = if needs_store(&playbook) {
            Some(store_access(&self.settings)?)
        } else {
            None
        };
        Ok(Rollout {
            playbook,
            targets,
            check: false,
            forks: self.settings.config.ssh.forks,
            ssh,
            catalog: Some(self.catalog.clone()),
            store,
            trigger: launch.trigger,
            operator: launch.operator.clone(),
            window: launch.window.as_ref().map(|w| w.name.clone()),
            stop: Stop::default(),
            clock: self.clock.clone(),
            fleet_slots: Some(self.fleet_slots.clone()),
        })
    }

    fn spawn(&mut self, launch: Launch, rollout: Rollout) {
        tracing::info!(
            playbook = launch.playbook,
            origin = launch.origin.label(),
            window = launch.window.as_ref().map(|w| w.name.as_str()),
            hosts = rollout.targets.len(),
            "starting a run"
        );
        let stop = rollout.stop.clone();
        let catalog = self.catalog.clone();
        let links = Links {
            label: launch.origin.label(),
            fire: launch.fire,
            trigger: match launch.origin {
                Origin::Trigger(id) => Some(id),
                _ => None,
            },
        };
        let task = tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let work = tokio::spawn(rollout::run(rollout, tx));
            let jobs = follow(rx, &catalog, &links).await;
            let report = work.await?;
            Ok((report, jobs))
        });
        self.runs.push(Active {
            playbook: launch.playbook,
            origin: launch.origin,
            window: launch.window,
            stop,
            task,
        });
    }
}

/// Why a due fire did not become a run.
enum NotStarted {
    Busy,
    Broken(anyhow::Error),
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
                Some(format!("cannot start: {err:#}")),
            ),
        }
    }
}

/// What a run's first event ties together in the catalog.
struct Links {
    label: String,
    fire: Option<i64>,
    trigger: Option<i64>,
}

/// Logs a run's events and ties the run to its fire or request once its
/// id is known; returns the finished jobs.
async fn follow(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    catalog: &Catalog,
    links: &Links,
) -> Vec<JobReport> {
    let mut jobs = Vec::new();
    while let Some(event) = rx.recv().await {
        if let Event::RunStarted { run: Some(id), .. } = &event {
            link(catalog, RunId(*id), links).await;
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

async fn link(catalog: &Catalog, run: RunId, links: &Links) {
    let linked = async {
        catalog.set_run_schedule(run, &links.label).await?;
        if let Some(fire) = links.fire {
            catalog.link_fire(fire, run).await?;
        }
        if let Some(request) = links.trigger {
            catalog
                .update_trigger(request, TriggerState::Started, None, Some(run))
                .await?;
        }
        Ok::<_, nightshift_catalog::CatalogError>(())
    };
    if let Err(err) = linked.await {
        tracing::warn!(%err, "cannot tie the run to its schedule or request");
    }
}

fn noticed(job: &JobReport) -> NoticeHost {
    NoticeHost {
        host: job.host.clone(),
        status: job.status.to_string(),
        error: job.error.clone(),
    }
}
