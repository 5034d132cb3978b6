//! One policy's check of one host: what it found, how old it is against
//! its limit, and how ages and limits read.

use chrono::{DateTime, NaiveDate, Utc};
use nightshift_catalog::{HostTrail, PendingUpdate};
use nightshift_plan::{Policy, PolicySettings};

use crate::model::{Check, PendingItem, Status};

/// The day a moment falls on where the controller runs: an exception's
/// `expires` is a day on the sysadmin's calendar.
pub(super) fn local_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono::Local).date_naive()
}

pub(super) fn blank(policy: Policy) -> Check {
    Check {
        policy,
        status: Status::Compliant,
        reason: String::new(),
        last_at: None,
        age_days: None,
        limit_days: None,
        run: None,
        pending: Vec::new(),
        exception: None,
        exception_expires: None,
    }
}

fn days(d: chrono::Duration) -> f64 {
    d.num_seconds() as f64 / 86_400.0
}

fn limit_days(limit: nightshift_plan::Duration) -> f64 {
    limit.0.as_secs() as f64 / 86_400.0
}

pub(super) fn over(
    at: DateTime<Utc>,
    since: DateTime<Utc>,
    limit: nightshift_plan::Duration,
) -> bool {
    (at - since).to_std().is_ok_and(|age| age > limit.0)
}

/// A policy met by something happening recently enough.
pub(super) fn recent(
    policy: Policy,
    at: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    limit: nightshift_plan::Duration,
    what: &str,
    never: &str,
) -> Check {
    let base = Check {
        limit_days: Some(limit_days(limit)),
        ..blank(policy)
    };
    match last {
        None => Check {
            reason: never.to_string(),
            ..base
        },
        Some(last) => {
            let reason = format!("{what} {} ago, {}", age(at - last), day_time(last));
            aged(base, at, last, reason)
        }
    }
}

pub(super) fn patch(
    policy: Policy,
    at: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    limit: nightshift_plan::Duration,
    pending: &[&PendingUpdate],
    security: bool,
    trail: &HostTrail,
) -> Check {
    let kind = if security { "security" } else { "other" };
    let items: Vec<PendingItem> = pending
        .iter()
        .filter(|p| p.security == security)
        .map(|p| PendingItem {
            package: p.package.clone(),
            version: p.version.clone(),
            since: p.since,
            age_days: days(at - p.since),
        })
        .collect();
    let base = Check {
        limit_days: Some(limit_days(limit)),
        run: trail.last_patch_run,
        ..blank(policy)
    };
    let Some(since) = since else {
        return Check {
            reason: format!("no {kind} update pending"),
            ..base
        };
    };
    let what = match items.as_slice() {
        [] => format!("a {kind} update"),
        [one] => format!("{} ({kind})", one.package),
        [first, ..] => format!(
            "{} {kind} updates, the oldest {}",
            items.len(),
            first.package
        ),
    };
    let reason = format!(
        "{what} pending {} (first seen {})",
        age(at - since),
        since.format("%Y-%m-%d")
    );
    aged(
        Check {
            pending: items,
            ..base
        },
        at,
        since,
        reason,
    )
}

/// `base`, with how long ago `since` was at `at`.
fn aged(base: Check, at: DateTime<Utc>, since: DateTime<Utc>, reason: String) -> Check {
    Check {
        reason,
        last_at: Some(since),
        age_days: Some(days(at - since)),
        ..base
    }
}

pub(super) fn reboot(
    at: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    limit: nightshift_plan::Duration,
    trail: &HostTrail,
) -> Check {
    let base = Check {
        limit_days: Some(limit_days(limit)),
        ..blank(Policy::Reboot)
    };
    let Some(since) = since else {
        return Check {
            reason: "no reboot pending".into(),
            ..base
        };
    };
    let why = trail
        .reboot_reason
        .as_ref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let reason = format!(
        "reboot pending {} (since {}){why}",
        age(at - since),
        since.format("%Y-%m-%d")
    );
    aged(base, at, since, reason)
}

/// `3 d 4 h`, `5 h 12 min`, `40 min`.
pub(crate) fn age(d: chrono::Duration) -> String {
    let minutes = d.num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{mins} min"),
        (0, h) if mins == 0 => format!("{h} h"),
        (0, h) => format!("{h} h {mins} min"),
        (d, 0) => format!("{d} d"),
        (d, h) => format!("{d} d {h} h"),
    }
}

fn day_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What a reader sees for a limit: `14 d`, `26 h`.
pub(crate) fn limit_text(limit: nightshift_plan::Duration) -> String {
    let hours = limit.0.as_secs() / 3600;
    if hours > 0 && hours.is_multiple_of(24) {
        format!("{} d", hours / 24)
    } else {
        format!("{hours} h")
    }
}

pub(crate) fn label(policy: Policy, p: &PolicySettings) -> String {
    match policy {
        Policy::PatchSecurity => format!("patch SLA (security ≤ {})", limit_text(p.patch_security)),
        Policy::PatchOther => format!("patch SLA (other ≤ {})", limit_text(p.patch_other)),
        Policy::BackupRpo => format!("backup RPO (≤ {})", limit_text(p.backup_rpo)),
        Policy::RestoreTest => format!("restore tested (≤ {})", limit_text(p.restore_test)),
        Policy::BackupCheck => format!("backup checked (≤ {})", limit_text(p.backup_check)),
        Policy::Reboot => format!("reboot pending (≤ {})", limit_text(p.reboot)),
        Policy::LastSeen => format!("host seen (≤ {})", limit_text(p.last_seen)),
        Policy::Scheduled => "on an enabled schedule".into(),
    }
}
