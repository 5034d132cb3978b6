//! What stops the daemon from starting, or a run of it from starting.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Controller(#[from] nightshift_controller::ControllerError),
    #[error(transparent)]
    Plan(#[from] nightshift_plan::PlanError),
    #[error(transparent)]
    Catalog(#[from] nightshift_catalog::CatalogError),
    #[error(transparent)]
    Launch(#[from] nightshift_engine::launch::LaunchError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("daemon.max_hosts = {0} is out of range; give 1 to 100000")]
    MaxHosts(usize),
    #[error("notify.webhook is not a URL ({0}); write it as https://host/path")]
    WebhookUrl(String),
    #[error("notify.webhook must be an http or https URL, not {0}:")]
    WebhookScheme(String),
    #[error("cannot make the webhook's HTTP client: {0}")]
    WebhookClient(#[source] reqwest::Error),
    #[error("cannot listen for metrics on {addr}: {source}; pick another --metrics-listen")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the daemon's signal handlers or runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("a run's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An error and every cause under it, as one line: "cannot read F: No
/// such file or directory".
pub(crate) fn said(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
