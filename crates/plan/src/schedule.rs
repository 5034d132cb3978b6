use chrono_tz::Tz;

use crate::CatchUp;
use crate::cron::Cron;
use crate::window::WindowRule;

/// When a playbook runs, checked: a crontab(5) expression in a time zone,
/// inside a named maintenance window that exists and opens.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Stable identity across restarts and reloads:
    /// `playbook|cron|timezone|window`, each as written. Editing any of them
    /// makes a new schedule, with no history of fires.
    pub key: String,
    /// The playbook's `name`.
    pub playbook: String,
    pub cron: Cron,
    /// The zone the cron expression is read in.
    pub timezone: Tz,
    pub window_name: String,
    /// The window in its own zone (the schedule's when it names none).
    pub window: WindowRule,
    pub enabled: bool,
    /// The schedule's own catch-up policy; `None` means the config's
    /// `daemon.catch_up`. Not part of the key: changing it keeps the
    /// schedule's history.
    pub catch_up: Option<CatchUp>,
}

/// A named maintenance window, checked.
#[derive(Debug, Clone)]
pub struct Window {
    /// The rule, in the window's own zone or, when it names none, in UTC.
    pub rule: WindowRule,
    /// Whether the window names its zone; if not, each user reads it in
    /// its own (a schedule in the schedule's, a host in UTC).
    pub own_zone: bool,
}

impl Window {
    /// The rule as read by a user whose zone is `zone`.
    pub fn in_zone(&self, zone: Tz) -> WindowRule {
        let mut rule = self.rule.clone();
        if !self.own_zone {
            rule.timezone = zone;
        }
        rule
    }
}

/// A host's own window: the host's `window`, else that of the first of its
/// groups that has one.
#[derive(Debug, Clone)]
pub struct HostWindow {
    pub name: String,
    pub rule: WindowRule,
}
