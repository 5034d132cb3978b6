use std::collections::BTreeMap;

use serde::Deserialize;

/// A schedules file: `[[schedule]]` entries and the `[windows.NAME]` they
/// refer to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    #[serde(default)]
    pub schedule: Vec<Schedule>,
    #[serde(default)]
    pub windows: BTreeMap<String, Window>,
}

/// When a playbook runs: a crontab(5) expression in a time zone, inside a
/// named maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub playbook: String,
    pub cron: String,
    pub timezone: String,
    pub window: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// An off-hours maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default)]
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub blackout: Vec<String>,
    /// Month rules such as "second Tuesday" or "second Tuesday + 4 days".
    #[serde(default)]
    pub monthly: Option<String>,
}
