//! What a report holds: the JSON form is this, field for field.

use chrono::{DateTime, Utc};
use nightshift_plan::Policy;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub as_of: DateTime<Utc>,
    /// The group the report is limited to, if any.
    pub group: Option<String>,
    pub hosts_total: usize,
    /// One figure per policy, in the order of [`Policy::ALL`].
    pub policies: Vec<PolicyFigure>,
    /// Hosts compliant with (or exempt from) every policy.
    pub overall: PolicyFigure,
    /// Weekly, oldest first, from the first week the fleet had hosts; the
    /// last point is `as_of`.
    pub trend: Vec<TrendPoint>,
    pub time_to_patch: TimeToPatch,
    /// Every host, by name.
    pub hosts: Vec<HostRow>,
}

/// How many hosts comply with one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyFigure {
    /// `None` for the overall figure.
    pub policy: Option<Policy>,
    /// As a reader sees it: `backup RPO (≤ 26 h)`.
    pub label: String,
    /// Compliant, counting exempt hosts.
    pub compliant: usize,
    /// Of those, exempt by an exception.
    pub exempt: usize,
    pub total: usize,
    /// `compliant / total`, 100 for an empty fleet.
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub at: DateTime<Utc>,
    pub hosts: usize,
    pub overall_percent: f64,
    /// Per policy, in the order of [`Policy::ALL`].
    pub percent: Vec<f64>,
}

/// Security updates applied in the period, by how long each had been
/// pending when it was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TimeToPatch {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub within_2_days: usize,
    pub within_14_days: usize,
    pub within_30_days: usize,
    pub longer: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRow {
    pub host: String,
    /// Compliant with (or exempt from) every policy.
    pub compliant: bool,
    /// One per policy, in the order of [`Policy::ALL`].
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Compliant,
    NonCompliant,
    Exempt,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::NonCompliant => "non_compliant",
            Self::Exempt => "exempt",
        }
    }

    pub fn counts(self) -> bool {
        self != Self::NonCompliant
    }
}

/// One host against one policy, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub policy: Policy,
    pub status: Status,
    /// One line a manager can read: `last good backup 3 d 4 h ago (run 402
    /// failed: unreachable)`.
    pub reason: String,
    /// The moment the verdict rests on: the last backup, the oldest pending
    /// update's first sighting, the last restore test.
    pub last_at: Option<DateTime<Utc>>,
    /// How old `last_at` was at the report's moment, in days.
    pub age_days: Option<f64>,
    pub limit_days: Option<f64>,
    /// The run to look at (`nightshift runs show ID`).
    pub run: Option<i64>,
    /// Pending updates, for the patch policies.
    pub pending: Vec<PendingItem>,
    /// The exception's reason, when one applies.
    pub exception: Option<String>,
    pub exception_expires: Option<chrono::NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingItem {
    pub package: String,
    pub version: String,
    pub since: DateTime<Utc>,
    pub age_days: f64,
}
