use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A schedules file: `[[schedule]]` entries and the `[windows.NAME]` they
/// refer to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    #[serde(default)]
    pub schedule: Vec<Schedule>,
    #[serde(default)]
    pub windows: BTreeMap<Spanned<String>, Window>,
}

/// When a playbook runs: a crontab(5) expression in a time zone, inside a
/// named maintenance window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The playbook's `name`.
    pub playbook: Spanned<String>,
    pub cron: Spanned<String>,
    /// An IANA time zone such as `Europe/Berlin`.
    pub timezone: Spanned<String>,
    pub window: Spanned<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Missed fires for this schedule: `skip` or `once` [default: the
    /// config's `daemon.catch_up`].
    #[serde(default)]
    pub catch_up: Option<crate::CatchUp>,
}

fn enabled_by_default() -> bool {
    true
}

/// An off-hours maintenance window as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Days the window opens on; none (and no month rule) means every day.
    #[serde(default)]
    pub days: Vec<Spanned<String>>,
    /// A month rule such as "second Tuesday" or "Saturday after second Tuesday".
    #[serde(default)]
    pub monthly: Option<Spanned<String>>,
    pub start: Spanned<String>,
    /// Earlier than `start` means the next morning.
    pub end: Spanned<String>,
    /// Defaults to the time zone of the schedule using the window (UTC for a
    /// host's own window).
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub blackout: Vec<Spanned<String>>,
    #[serde(default)]
    pub freeze: Vec<Freeze>,
}

/// A change freeze: no window opens from `from` to `to`, both included.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    #[serde(default)]
    pub reason: Option<String>,
}
