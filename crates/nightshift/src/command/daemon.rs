//! `nightshift daemon`: runs schedules, only ever inside their windows (the
//! daemon itself is the `nightshift-daemon` library).
//!
//! One daemon per data directory (a `flock` on `daemon.pid`). SIGTERM or
//! SIGINT stop it gracefully (nothing new starts, steps in flight get the
//! grace period, then are cancelled and recorded as interrupted, and it
//! exits 0); SIGHUP reloads the configuration after checking it, keeping
//! the running one when the new one is refused.

use std::process::ExitCode;

use clap::Args;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Serve Prometheus metrics on this address (127.0.0.1:9187); off unless given
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub fn run(settings: Settings, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    // A plan with problems is refused before anything starts, as by
    // every command (`main` shows the problems, status 2).
    let plan = settings.plan()?;
    let options = nightshift_daemon::Options {
        metrics_listen: args.metrics_listen,
    };
    nightshift_daemon::run(settings, plan, &options)?;
    Ok(ExitCode::SUCCESS)
}
