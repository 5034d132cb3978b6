//! Starting a run the same way from every front end.
//!
//! The CLI's `run`, the daemon's fires, trigger requests and pickups of
//! deferred hosts, and any later front end describe a run with a
//! [`Launch`]: which playbook, on which hosts, why, and within what limits.
//! [`Launch::build`] checks it against the plan and yields the [`Rollout`]
//! the engine runs. Nothing is recorded before the rollout starts; then the
//! run's row is written once, with the schedule, fire or request it answers.

use std::sync::Arc;
use std::time::Duration;

use nightshift_catalog::{Catalog, RunCause, Trigger};
use nightshift_plan::inventory::{Inventory, Retention};
use nightshift_plan::{Action, Plan, Playbook, Verify};
use nightshift_scheduler::{Clock, SystemClock};
use nightshift_store::RetentionPolicy;
use nightshift_transport::SshConfig;
use tokio::sync::Semaphore;

use crate::reach::{ReachError, reach};
use crate::rollout::{Rollout, StoreAccess, Target};
use crate::stop::{Closing, Stop};

/// Hosts worked on at once when the front end does not say.
pub const DEFAULT_FORKS: usize = 50;

/// Why a run cannot start; nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no playbook `{wanted}`; known playbooks: {known}")]
    UnknownPlaybook { wanted: String, known: String },
    #[error(
        "{wanted} is not among the playbooks the config names (playbooks = {dirs}); move it there or point the config at it"
    )]
    OutsidePlan { wanted: String, dirs: String },
    #[error(
        "--limit: `{pattern}` matches no host in the inventory; `nightshift hosts list` shows them"
    )]
    LimitMatchesNothing { pattern: String },
    #[error("the playbook's targets (and --limit) leave no host to run on")]
    NoHosts,
    #[error(transparent)]
    Reach(#[from] ReachError),
    #[error(
        "the playbook {playbook} backs up or tests restores, so it needs the store; give the launch its store"
    )]
    NoStore { playbook: String },
}

/// Why a run starts, recorded with the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `nightshift run`, by an operator.
    Manual { operator: String },
    /// A schedule's fire; `fire` is its row in the catalog once recorded.
    Schedule { key: String, fire: Option<i64> },
    /// A request made with `nightshift trigger`.
    Trigger { request: i64, operator: String },
    /// Hosts deferred by earlier runs, now inside their own window.
    Deferred,
}

impl Origin {
    /// The catalog's `runs.trigger`.
    pub fn trigger(&self) -> Trigger {
        match self {
            Self::Manual { .. } | Self::Trigger { .. } => Trigger::Manual,
            Self::Schedule { .. } | Self::Deferred => Trigger::Schedule,
        }
    }

    pub fn operator(&self) -> Option<&str> {
        match self {
            Self::Manual { operator } | Self::Trigger { operator, .. } => Some(operator),
            Self::Schedule { .. } | Self::Deferred => None,
        }
    }

    /// The catalog's `runs.schedule`: a schedule's key, `trigger:ID` or
    /// `deferred`; nothing for a manual run.
    pub fn label(&self) -> Option<String> {
        match self {
            Self::Manual { .. } => None,
            Self::Schedule { key, .. } => Some(key.clone()),
            Self::Trigger { request, .. } => Some(format!("trigger:{request}")),
            Self::Deferred => Some("deferred".into()),
        }
    }

    /// What the run's row ties together, `label` being [`Self::label`].
    pub(crate) fn cause<'a>(&self, label: Option<&'a str>) -> RunCause<'a> {
        RunCause {
            schedule: label,
            fire: match self {
                Self::Schedule { fire, .. } => *fire,
                _ => None,
            },
            request: match self {
                Self::Trigger { request, .. } => Some(*request),
                _ => None,
            },
        }
    }
}

/// A run about to start, described by the front end that starts it.
#[derive(Debug)]
pub struct Launch<'p> {
    plan: &'p Plan,
    playbook: Playbook,
    origin: Origin,
    ssh: SshConfig,
    limit: Option<String>,
    host_windows: bool,
    check: bool,
    forks: usize,
    catalog: Option<Catalog>,
    store: Option<StoreAccess>,
    window: Option<(String, Closing)>,
    clock: Arc<dyn Clock>,
    fleet_slots: Option<Arc<Semaphore>>,
    grace: Duration,
}

impl<'p> Launch<'p> {
    /// A run of `playbook` (its name or its file) from `plan`, for
    /// `origin`, reaching hosts with `ssh`.
    pub fn new(
        plan: &'p Plan,
        playbook: &str,
        origin: Origin,
        ssh: SshConfig,
    ) -> Result<Self, LaunchError> {
        Ok(Self {
            playbook: find_playbook(plan, playbook)?.clone(),
            plan,
            origin,
            ssh,
            limit: None,
            host_windows: false,
            check: false,
            forks: DEFAULT_FORKS,
            catalog: None,
            store: None,
            window: None,
            clock: Arc::new(SystemClock),
            fleet_slots: None,
            grace: Duration::ZERO,
        })
    }

    pub fn playbook(&self) -> &Playbook {
        &self.playbook
    }

    /// Whether the playbook backs up or tests restores, so that
    /// [`Self::store`] must be given (a check run may go without: its
    /// backups then report what they would read, all of it new).
    pub fn needs_store(&self) -> bool {
        self.playbook.steps.iter().any(|s| {
            matches!(
                s.action,
                Action::Backup(_) | Action::Verify(Verify::BackupCheck | Verify::RestoreTest)
            )
        })
    }

    /// Only these of the playbook's hosts: names, `group:NAME`, globs and
    /// exclusions, comma-separated.
    pub fn limit(mut self, limit: Option<&str>) -> Self {
        self.limit = limit.map(str::to_string);
        self
    }

    /// Keep each host's own window: a host whose window is closed when its
    /// batch comes is deferred. A manual run leaves windows to the daemon.
    pub fn host_windows(mut self, keep: bool) -> Self {
        self.host_windows = keep;
        self
    }

    /// Report what would happen and change nothing (and record nothing).
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    pub fn forks(mut self, forks: usize) -> Self {
        self.forks = forks;
        self
    }

    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    pub fn store(mut self, store: StoreAccess) -> Self {
        self.store = Some(store);
        self
    }

    /// The window the run must end in: drained at its close, cancelled
    /// after `closing.grace`.
    pub fn window(mut self, name: &str, closing: Closing) -> Self {
        self.window = Some((name.to_string(), closing));
        self
    }

    /// The clock host windows are read by (the daemon's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A bound on hosts at once shared with other runs, on top of `forks`.
    pub fn fleet_slots(mut self, slots: Arc<Semaphore>) -> Self {
        self.fleet_slots = Some(slots);
        self
    }

    /// How long a host's steps may go on after its own window closed.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The rollout, with its hosts resolved and each one's way to be
    /// reached, retention policy and (when kept) window.
    pub fn build(self) -> Result<Rollout, LaunchError> {
        if self.needs_store() && self.store.is_none() && !self.check {
            return Err(LaunchError::NoStore {
                playbook: self.playbook.name.clone(),
            });
        }
        let targets = self.targets()?;
        let (window, closing) = self.window.unzip();
        Ok(Rollout {
            undone_waits: self.origin == Origin::Deferred,
            playbook: self.playbook,
            targets,
            check: self.check,
            forks: self.forks,
            ssh: self.ssh,
            catalog: self.catalog,
            store: self.store,
            origin: self.origin,
            window,
            stop: Stop::default(),
            clock: self.clock,
            fleet_slots: self.fleet_slots,
            closing,
            grace: self.grace,
        })
    }

    fn targets(&self) -> Result<Vec<Target>, LaunchError> {
        let inventory = &self.plan.inventory;
        hosts_of(inventory, &self.playbook, self.limit.as_deref())?
            .into_iter()
            .map(|name| {
                Ok(Target {
                    reach: reach(inventory, &name)?,
                    address: inventory.hosts.get(&name).and_then(|h| h.address.clone()),
                    retention: inventory.retention(&name).map(retention_policy),
                    window: self
                        .plan
                        .host_windows
                        .get(&name)
                        .filter(|_| self.host_windows)
                        .cloned(),
                    name,
                })
            })
            .collect()
    }
}

/// A playbook by its name or its file.
pub fn find_playbook<'a>(plan: &'a Plan, wanted: &str) -> Result<&'a Playbook, LaunchError> {
    let path = std::path::Path::new(wanted);
    let found = plan.playbooks.iter().find(|p| {
        p.name == wanted
            || p.file == path
            || std::fs::canonicalize(&p.file).ok() == std::fs::canonicalize(path).ok()
                && path.exists()
    });
    match found {
        Some(playbook) => Ok(playbook),
        None if path.exists() => {
            let mut dirs: Vec<String> = plan
                .playbooks
                .iter()
                .filter_map(|p| p.file.parent().map(|d| d.display().to_string()))
                .collect();
            dirs.dedup();
            Err(LaunchError::OutsidePlan {
                wanted: wanted.to_string(),
                dirs: dirs.join(", "),
            })
        }
        None => Err(LaunchError::UnknownPlaybook {
            wanted: wanted.to_string(),
            known: plan
                .playbooks
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The playbook's hosts, narrowed by `limit`.
pub fn hosts_of(
    inventory: &Inventory,
    playbook: &Playbook,
    limit: Option<&str>,
) -> Result<Vec<String>, LaunchError> {
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
            return Err(LaunchError::LimitMatchesNothing {
                pattern: (*stray).to_string(),
            });
        }
        let allowed = resolver.resolve(&patterns);
        names.retain(|n| allowed.contains(n));
    }
    if names.is_empty() {
        return Err(LaunchError::NoHosts);
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

/// The store's form of an inventory retention policy. A `keep_within`
/// beyond chrono's range (some 292 billion years) keeps everything, as it
/// means to.
pub fn retention_policy(r: Retention) -> RetentionPolicy {
    RetentionPolicy {
        last: r.keep_last,
        hourly: r.keep_hourly,
        daily: r.keep_daily,
        weekly: r.keep_weekly,
        monthly: r.keep_monthly,
        yearly: r.keep_yearly,
        within: r
            .keep_within
            .map(|d| chrono::Duration::from_std(d.0).unwrap_or(chrono::Duration::MAX)),
        tags: r.keep_tags,
    }
}
