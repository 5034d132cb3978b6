//! The plan as written: serde's view of the TOML, with every span kept so a
//! check can point at the exact place. Nothing outside this crate sees these
//! types; commands get the checked [`crate::Plan`] or its diagnostics.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::playbook::{Backup, Reboot, Serial, Threshold, Update};
use crate::{CatchUp, Duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub targets: Vec<Spanned<String>>,
    #[serde(default)]
    pub serial: Option<Serial>,
    #[serde(default)]
    pub max_failures: Option<Threshold>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default, rename = "become")]
    pub become_root: bool,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    pub steps: Vec<Step>,
}

/// A step as written: the five action keys are all optional here, and the
/// check insists on exactly one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: Spanned<String>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub delay: Option<Duration>,
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default)]
    pub check: bool,
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub update: Option<Update>,
    #[serde(default)]
    pub backup: Option<Backup>,
    #[serde(default)]
    pub verify: Option<Spanned<Verify>>,
    #[serde(default)]
    pub reboot: Option<Reboot>,
}

impl Step {
    /// The names of the action keys this step sets.
    pub fn actions(&self) -> Vec<&'static str> {
        [
            ("command", self.command.is_some()),
            ("update", self.update.is_some()),
            ("backup", self.backup.is_some()),
            ("verify", self.verify.is_some()),
            ("reboot", self.reboot.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub expect_exit: Option<i32>,
    #[serde(default)]
    pub expect_output: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub delay: Option<Duration>,
    #[serde(default)]
    pub backup_check: bool,
    #[serde(default)]
    pub restore_test: bool,
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub playbook: Spanned<String>,
    pub cron: Spanned<String>,
    pub timezone: Spanned<String>,
    pub window: Spanned<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default)]
    pub days: Vec<Spanned<String>>,
    #[serde(default)]
    pub monthly: Option<Spanned<String>>,
    pub start: Spanned<String>,
    pub end: Spanned<String>,
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub blackout: Vec<Spanned<String>>,
    #[serde(default)]
    pub freeze: Vec<Freeze>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    /// For the file's readers; nothing reads it back.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted so a freeze can say why")]
    pub reason: Option<String>,
}
