//! The daemon: runs schedules, only ever inside their windows.
//!
//! It lives in a library of its own so that every front end that starts
//! or watches it (`nightshift daemon`, a web console, a second controller)
//! uses the same dispatch, leases, triggers, pickups and lock.
//!
//! One daemon per data directory (a `flock` on `daemon.pid`). It ticks
//! every second; SIGTERM or SIGINT stop it gracefully (nothing new starts,
//! steps in flight get the grace period, then are cancelled and recorded as
//! interrupted, and it exits 0); SIGHUP reloads the configuration after
//! validating it, keeping the running one when the new one is invalid.

mod dispatch;
mod error;
pub mod lock;
mod metrics;
mod notify;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_catalog::{CATALOG_FILE, Catalog};
use nightshift_controller::Settings;
use nightshift_engine::stop::StopKind;
use nightshift_plan::{Plan, PlanError};
use nightshift_scheduler::SystemClock;
use tokio::signal::unix::{SignalKind, signal};

pub use dispatch::Daemon;
pub use error::DaemonError;

/// How often the daemon looks at its schedules.
const TICK: Duration = Duration::from_secs(1);

/// After the grace period and the cancel, how long runs get to record how
/// they ended before the daemon exits regardless.
const RECORDING: Duration = Duration::from_secs(30);

/// How the daemon serves, beyond its configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve Prometheus metrics on this address; off when `None`.
    pub metrics_listen: Option<SocketAddr>,
}

/// Runs the daemon for `settings` and its checked `plan` until SIGTERM or
/// SIGINT.
pub fn run(settings: Settings, plan: Plan, options: &Options) -> Result<(), DaemonError> {
    let holder = lock::Holder {
        pid: std::process::id(),
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        version: env!("CARGO_PKG_VERSION").into(),
        metrics: options.metrics_listen.map(|a| a.to_string()),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(DaemonError::Runtime)?;
    let served = runtime.block_on(async {
        // Handlers first: once the lock shows the daemon, a signal sent to
        // it must find them (SIGHUP's default would kill it).
        let signals = Signals::new().map_err(DaemonError::Runtime)?;
        let _lock = lock::DaemonLock::acquire(&settings.data_dir, &holder)?;
        serve(settings, plan, options, signals).await
    });
    // Blocking store work of a cancelled backup, or a last notice, gets a
    // moment; then the daemon exits regardless.
    runtime.shutdown_timeout(Duration::from_secs(10));
    served
}

struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

async fn serve(
    settings: Settings,
    plan: Plan,
    options: &Options,
    mut signals: Signals,
) -> Result<(), DaemonError> {
    let catalog = Catalog::open(&settings.data_dir.join(CATALOG_FILE)).await?;
    let left = catalog.interrupt_orphans(chrono::Utc::now()).await?;
    if left.runs > 0 {
        tracing::warn!(
            "{} run(s) of a controller that is gone were left running; they now read as interrupted",
            left.runs
        );
    }
    if let Some(addr) = options.metrics_listen {
        metrics::serve(addr, catalog.clone()).await?;
    }
    let mut daemon = Daemon::new(settings, plan, catalog.clone(), Arc::new(SystemClock))?;
    tracing::info!(
        pid = std::process::id(),
        schedules = daemon.entries.len(),
        "nightshift daemon started"
    );
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let why = loop {
        tokio::select! {
            _ = ticker.tick() => daemon.tick().await,
            _ = signals.term.recv() => break "SIGTERM",
            _ = signals.interrupt.recv() => break "SIGINT",
            _ = signals.hangup.recv() => reload(&mut daemon).await,
        }
    };
    shut_down(&mut daemon, why).await;
    catalog.close().await;
    Ok(())
}

/// Stops gracefully: drain, wait out the grace period, cancel, let the
/// runs record how they ended.
async fn shut_down(daemon: &mut Daemon, signal: &str) {
    let grace = daemon.settings.config.daemon.grace.0;
    let reason = format!("the daemon was asked to stop ({signal})");
    tracing::info!(
        runs = daemon.runs.len(),
        "{reason}; steps in flight have {}s to finish",
        grace.as_secs()
    );
    daemon.drain_all(StopKind::Shutdown, &reason);
    wait_for_runs(daemon, grace).await;
    if !daemon.runs.is_empty() {
        tracing::warn!(
            runs = daemon.runs.len(),
            "the grace period is over; cancelling steps in flight"
        );
        daemon.cancel_all(StopKind::Shutdown, &reason);
        wait_for_runs(daemon, RECORDING).await;
    }
    if !daemon.runs.is_empty() {
        tracing::error!(
            runs = daemon.runs.len(),
            "runs did not end; the next start records them as interrupted"
        );
    }
    tracing::info!("nightshift daemon stopped");
}

async fn wait_for_runs(daemon: &mut Daemon, limit: Duration) {
    let until = Instant::now() + limit;
    while !daemon.runs.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        daemon.reap().await;
    }
}

/// SIGHUP: the configuration read and checked again; an invalid one is
/// refused, every problem logged, and the running one kept.
async fn reload(daemon: &mut Daemon) {
    let (config_file, data_dir) = (
        daemon.settings.config_file.clone(),
        daemon.settings.data_dir.clone(),
    );
    let replaced = match load_checked(config_file, data_dir) {
        Ok((settings, plan)) => daemon.replace(settings, plan).await,
        Err(err) => Err(err),
    };
    match replaced {
        Ok(()) => tracing::info!(schedules = daemon.entries.len(), "configuration reloaded"),
        Err(err) => {
            if let DaemonError::Plan(PlanError::Rejected(report)) = &err {
                for problem in &report.diagnostics {
                    tracing::error!("{problem}");
                }
            }
            tracing::error!(
                "the new configuration is refused: {}; keeping the running one",
                error::said(&err)
            );
        }
    }
}

/// The configuration and plan, read and checked whole.
fn load_checked(
    config_file: Option<std::path::PathBuf>,
    data_dir: std::path::PathBuf,
) -> Result<(Settings, Plan), DaemonError> {
    let settings = Settings::read(config_file, data_dir)?;
    let plan = settings.plan()?;
    Ok((settings, plan))
}
