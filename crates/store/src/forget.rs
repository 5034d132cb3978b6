//! Retention: which snapshots a policy keeps, and why.
//!
//! restic's semantics, which sysadmins already know: snapshots are grouped
//! by host and path set; within a group, newest first, `last` keeps the N
//! newest, and each calendar rule (hourly … yearly) keeps the newest
//! snapshot of each of the N most recent periods that have one; `within`
//! keeps everything younger than a duration before the group's newest
//! snapshot; a snapshot with a kept tag is always kept. Calendar periods are
//! taken in the time zone the caller gives (the controller's local time).

use std::collections::BTreeMap;

use chrono::{Datelike, TimeZone, Timelike};

use crate::error::{IoContext, Result};
use crate::repo::Store;
use crate::snapshot::SnapshotEntry;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<chrono::Duration>,
    /// Snapshots carrying any of these tags are kept.
    pub tags: Vec<String>,
}

impl RetentionPolicy {
    /// A policy that keeps nothing would forget every snapshot.
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(Option::is_none)
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// What the policy decided for one snapshot.
#[derive(Debug, Clone)]
pub struct Decision {
    pub snapshot: SnapshotEntry,
    /// Why it is kept; empty when it is forgotten.
    pub reasons: Vec<String>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Applies `policy` to `snapshots`; decisions come grouped by host and
/// paths, newest first within each group.
pub fn decide<Tz: TimeZone>(
    snapshots: &[SnapshotEntry],
    policy: &RetentionPolicy,
    zone: &Tz,
) -> Vec<Decision> {
    let mut groups: BTreeMap<(String, Vec<String>), Vec<&SnapshotEntry>> = BTreeMap::new();
    for entry in snapshots {
        let key = (entry.snapshot.host.clone(), entry.snapshot.paths.clone());
        groups.entry(key).or_default().push(entry);
    }
    let mut decisions = Vec::new();
    for mut group in groups.into_values() {
        group.sort_by(|a, b| b.snapshot.time.cmp(&a.snapshot.time).then(b.id.cmp(&a.id)));
        decisions.extend(decide_group(&group, policy, zone));
    }
    decisions
}

/// A calendar period, as numbers that differ when the period does.
type PeriodKey = (i32, u32, u32, u32);
type Period = fn(&chrono::NaiveDateTime) -> PeriodKey;

fn decide_group<Tz: TimeZone>(
    group: &[&SnapshotEntry],
    policy: &RetentionPolicy,
    zone: &Tz,
) -> Vec<Decision> {
    let rules: [(&str, Option<u32>, Period); 5] = [
        ("hourly", policy.hourly, |t| {
            (t.year(), t.ordinal(), t.hour(), 0)
        }),
        ("daily", policy.daily, |t| (t.year(), t.ordinal(), 0, 0)),
        ("weekly", policy.weekly, |t| {
            let week = t.iso_week();
            (week.year(), week.week(), 0, 0)
        }),
        ("monthly", policy.monthly, |t| (t.year(), t.month(), 0, 0)),
        ("yearly", policy.yearly, |t| (t.year(), 0, 0, 0)),
    ];
    let newest = group.first().map(|e| e.snapshot.time);
    // Per rule: periods kept so far, and the period of the last one kept.
    let mut counts: Vec<(u32, Option<PeriodKey>)> = vec![(0, None); rules.len()];
    let mut decisions = Vec::with_capacity(group.len());
    for (position, entry) in group.iter().enumerate() {
        let snapshot = &entry.snapshot;
        let local = snapshot.time.with_timezone(zone).naive_local();
        let mut reasons = Vec::new();
        if policy
            .last
            .is_some_and(|n| (position as u64) < u64::from(n))
        {
            reasons.push(format!("last {}", policy.last.unwrap_or(0)));
        }
        for (at, (name, limit, period)) in rules.iter().enumerate() {
            let Some(limit) = limit else { continue };
            let key = period(&local);
            let (kept, last_key) = &mut counts[at];
            if *kept < *limit && *last_key != Some(key) {
                *kept += 1;
                *last_key = Some(key);
                reasons.push(format!("{name} {kept}/{limit}"));
            }
        }
        if let (Some(within), Some(newest)) = (policy.within, newest)
            && newest.signed_duration_since(snapshot.time) < within
        {
            reasons.push(format!("within {}", describe(within)));
        }
        for tag in snapshot.tags.iter().filter(|t| policy.tags.contains(t)) {
            reasons.push(format!("tagged {tag}"));
        }
        decisions.push(Decision {
            snapshot: (*entry).clone(),
            reasons,
        });
    }
    decisions
}

fn describe(duration: chrono::Duration) -> String {
    let hours = duration.num_hours();
    if hours % 24 == 0 {
        format!("{}d", hours / 24)
    } else {
        format!("{hours}h")
    }
}

impl Store {
    /// Removes snapshot files. Their chunks stay until `prune`.
    pub fn forget(&self, ids: &[String]) -> Result<()> {
        for id in ids {
            let path = self.root().join("snapshots").join(id);
            std::fs::remove_file(&path).at("removing", &path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkId;
    use crate::snapshot::{Snapshot, Summary};
    use chrono::{DateTime, Utc};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .expect("RFC 3339")
    }

    fn snap(id: &str, time: &str, tags: &[&str]) -> SnapshotEntry {
        SnapshotEntry {
            id: format!("{id:0<64}"),
            snapshot: Snapshot {
                time: at(time),
                host: "web01".into(),
                paths: vec!["/etc".into()],
                tags: tags.iter().map(|t| t.to_string()).collect(),
                parent: None,
                tree: ChunkId::of(b""),
                summary: Summary::default(),
            },
        }
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.snapshot.id[..2].to_string())
            .collect()
    }

    /// Two snapshots a day, 03:00 and 15:00 UTC, over 40 days.
    fn history() -> Vec<SnapshotEntry> {
        let start = at("2026-10-01T03:00:00Z");
        (0..80)
            .map(|n| {
                let time = start + chrono::Duration::hours(12 * n);
                snap(
                    &format!("{n:02}"),
                    &time.to_rfc3339(),
                    if n == 5 { &["pre-upgrade"] } else { &[] },
                )
            })
            .collect()
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let policy = RetentionPolicy {
            daily: Some(3),
            ..Default::default()
        };
        let decisions = decide(&history(), &policy, &Utc);
        assert_eq!(kept(&decisions), ["79", "77", "75"]);
        assert_eq!(decisions[0].reasons, ["daily 1/3"]);
    }

    #[test]
    fn rules_combine_and_reasons_say_which() {
        let policy = RetentionPolicy {
            last: Some(2),
            weekly: Some(2),
            monthly: Some(2),
            tags: vec!["pre-upgrade".into()],
            ..Default::default()
        };
        let decisions = decide(&history(), &policy, &Utc);
        // 79 is Monday 2026-11-09 15:00 (ISO week 46) and 78 the same
        // morning, 77 Sunday the 8th (week 45), 61 October 31st, 05 tagged.
        assert_eq!(kept(&decisions), ["79", "78", "77", "61", "05"]);
        assert_eq!(
            decisions[0].reasons,
            ["last 2", "weekly 1/2", "monthly 1/2"]
        );
        let tagged = decisions
            .iter()
            .find(|d| d.snapshot.id.starts_with("05"))
            .expect("snapshot 05 decided");
        assert_eq!(tagged.reasons, ["tagged pre-upgrade"]);
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot() {
        let policy = RetentionPolicy {
            within: Some(chrono::Duration::days(2)),
            ..Default::default()
        };
        let decisions = decide(&history(), &policy, &Utc);
        // Strictly younger, as restic counts: 75 is exactly two days older.
        assert_eq!(kept(&decisions), ["79", "78", "77", "76"]);
    }

    #[test]
    fn days_are_counted_in_the_given_time_zone() {
        // 03:00 and 15:00 UTC are the same day in UTC but 23:00 and 11:00
        // the next day in UTC-4 ... so the days pair differently.
        let zone = chrono::FixedOffset::west_opt(4 * 3600).expect("a valid offset");
        let policy = RetentionPolicy {
            daily: Some(2),
            ..Default::default()
        };
        let utc = kept(&decide(&history(), &policy, &Utc));
        let shifted = kept(&decide(&history(), &policy, &zone));
        assert_eq!(utc, ["79", "77"]);
        assert_eq!(shifted, ["79", "78"]);
    }

    #[test]
    fn groups_are_per_host_and_paths() {
        let mut snapshots = history();
        let mut other = snap("aa", "2026-10-01T00:00:00Z", &[]);
        other.snapshot.host = "db01".into();
        snapshots.push(other);
        let policy = RetentionPolicy {
            last: Some(1),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&snapshots, &policy, &Utc)), ["aa", "79"]);
    }

    #[test]
    fn an_empty_policy_is_recognised() {
        assert!(RetentionPolicy::default().is_empty());
        assert!(
            !RetentionPolicy {
                yearly: Some(1),
                ..Default::default()
            }
            .is_empty()
        );
    }
}
