//! Verdicts: each host against each policy at one moment.

mod check;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use nightshift_catalog::{AppliedUpdate, HostFacts, HostTrail, PendingUpdate};
use nightshift_plan::{Exception, Policy, PolicySettings};

use crate::model::{Check, HostRow, PolicyFigure, Report, Status, TimeToPatch, TrendPoint};
use check::{blank, label, local_day, over, patch, reboot, recent};

/// The hosts a report covers, as the plan has them.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The hosts in the report (after `--group`).
    pub hosts: Vec<String>,
    /// Each host's groups, for exceptions that name a group.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Hosts that some enabled schedule's playbook targets.
    pub scheduled: BTreeSet<String>,
    pub group: Option<String>,
}

/// What the catalog said, at the report's moment and before.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub as_of: DateTime<Utc>,
    /// Every host's facts at `as_of`.
    pub facts: Vec<HostFacts>,
    /// Earlier moments for the trend, oldest first, each with the facts then.
    pub earlier: Vec<(DateTime<Utc>, Vec<HostFacts>)>,
    /// Updates pending at `as_of`.
    pub pending: Vec<PendingUpdate>,
    /// Runs and reasons, for the hosts they were read for.
    pub trails: BTreeMap<String, HostTrail>,
    /// Security updates applied in the trend's period.
    pub applied: Vec<AppliedUpdate>,
    /// Every host the catalog has, whenever first recorded: a host of the
    /// fleet missing from a moment's facts but in here joined later.
    pub known: BTreeSet<String>,
    /// Where the trend's period starts.
    pub period_start: DateTime<Utc>,
}

/// The report: verdicts at `as_of`, the trend over the earlier moments,
/// and the time-to-patch figures.
pub fn build(
    fleet: &Fleet,
    policy: &PolicySettings,
    exceptions: &[Exception],
    evidence: &Evidence,
) -> Report {
    let judge = Judge::new(fleet, policy, exceptions, evidence);
    let moment = (evidence.as_of, local_day(evidence.as_of));
    let hosts: Vec<HostRow> = judge
        .roster(&evidence.facts)
        .map(|(host, facts)| judge.host(host, moment, facts, evidence))
        .collect();
    let mut trend: Vec<TrendPoint> = evidence
        .earlier
        .iter()
        .map(|(at, facts)| judge.point(*at, facts))
        // A week before the fleet had any host says nothing (not 100 %).
        .filter(|p| p.hosts > 0)
        .collect();
    let (policies, overall) = figures(policy, &hosts);
    trend.push(TrendPoint {
        at: evidence.as_of,
        hosts: hosts.len(),
        overall_percent: overall.percent,
        percent: policies.iter().map(|f| f.percent).collect(),
    });
    Report {
        as_of: evidence.as_of,
        group: fleet.group.clone(),
        hosts_total: hosts.len(),
        policies,
        overall,
        trend,
        time_to_patch: time_to_patch(evidence, &fleet.hosts),
        hosts,
    }
}

/// The hosts whose figures need explaining at `evidence.as_of`: not
/// compliant, or exempt, on some policy. Their runs and reasons are worth
/// reading from the catalog; a compliant host's dates say enough.
pub fn to_explain(
    fleet: &Fleet,
    policy: &PolicySettings,
    exceptions: &[Exception],
    evidence: &Evidence,
) -> Vec<String> {
    let judge = Judge::new(fleet, policy, exceptions, evidence);
    judge
        .roster(&evidence.facts)
        .filter(|(host, facts)| {
            Policy::ALL
                .iter()
                .any(|&p| !judge.meets(p, host, evidence.as_of, facts))
        })
        .map(|(host, _)| host.to_string())
        .collect()
}

struct Judge<'a> {
    fleet: &'a Fleet,
    policy: &'a PolicySettings,
    exceptions: &'a [Exception],
    /// Hosts the catalog has at all.
    known: &'a BTreeSet<String>,
    /// Updates pending at the report's moment, by host.
    pending: BTreeMap<&'a str, Vec<&'a PendingUpdate>>,
    never: HostFacts,
}

impl<'a> Judge<'a> {
    fn new(
        fleet: &'a Fleet,
        policy: &'a PolicySettings,
        exceptions: &'a [Exception],
        evidence: &'a Evidence,
    ) -> Self {
        let mut pending: BTreeMap<&str, Vec<&PendingUpdate>> = BTreeMap::new();
        for update in &evidence.pending {
            pending
                .entry(update.host.as_str())
                .or_default()
                .push(update);
        }
        Self {
            fleet,
            policy,
            exceptions,
            known: &evidence.known,
            pending,
            never: HostFacts::default(),
        }
    }

    /// Every host of the fleet the catalog knew when `facts` were read,
    /// and those it has never known (judged as never reached). A host the
    /// catalog has but did not have then was not in the fleet yet.
    fn roster<'b>(
        &'b self,
        facts: &'b [HostFacts],
    ) -> impl Iterator<Item = (&'b str, &'b HostFacts)> + 'b {
        let by_name: BTreeMap<&str, &HostFacts> =
            facts.iter().map(|f| (f.host.as_str(), f)).collect();
        self.fleet
            .hosts
            .iter()
            .filter_map(move |host| match by_name.get(host.as_str()) {
                Some(facts) => Some((host.as_str(), *facts)),
                None if self.known.contains(host) => None,
                None => Some((host.as_str(), &self.never)),
            })
    }

    /// Whether the host meets the policy at `at`, before exceptions: the
    /// one place each policy's rule is written.
    fn meets(&self, policy: Policy, host: &str, at: DateTime<Utc>, f: &HostFacts) -> bool {
        let p = self.policy;
        let within = |t: Option<DateTime<Utc>>, limit| t.is_some_and(|t| !over(at, t, limit));
        let not_overdue = |t: Option<DateTime<Utc>>, limit| !t.is_some_and(|t| over(at, t, limit));
        let reached = f.last_seen.is_some();
        match policy {
            Policy::PatchSecurity => {
                reached && not_overdue(f.security_pending_since, p.patch_security)
            }
            Policy::PatchOther => reached && not_overdue(f.other_pending_since, p.patch_other),
            Policy::Reboot => reached && not_overdue(f.reboot_pending_since, p.reboot),
            Policy::BackupRpo => within(f.last_backup, p.backup_rpo),
            Policy::RestoreTest => within(f.last_restore_test, p.restore_test),
            Policy::BackupCheck => within(f.last_backup_check, p.backup_check),
            Policy::LastSeen => within(f.last_seen, p.last_seen),
            Policy::Scheduled => self.fleet.scheduled.contains(host),
        }
    }

    /// Compliant, exempt on `day` (the moment's local day, worked out
    /// once per moment: the time zone lookup is not free), or not.
    fn status_given(
        &self,
        met: bool,
        policy: Policy,
        host: &str,
        day: NaiveDate,
    ) -> (Status, Option<&Exception>) {
        if met {
            return (Status::Compliant, None);
        }
        match self.exception(policy, host, day) {
            Some(e) => (Status::Exempt, Some(e)),
            None => (Status::NonCompliant, None),
        }
    }

    fn host(
        &self,
        host: &str,
        (at, day): (DateTime<Utc>, NaiveDate),
        facts: &HostFacts,
        evidence: &Evidence,
    ) -> HostRow {
        let empty = HostTrail::default();
        let trail = evidence.trails.get(host).unwrap_or(&empty);
        let pending = self
            .pending
            .get(host)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let checks: Vec<Check> = Policy::ALL
            .iter()
            .map(|&p| {
                let met = self.meets(p, host, at, facts);
                let (status, exception) = self.status_given(met, p, host, day);
                Check {
                    status,
                    exception: exception.map(|e| e.reason.get_ref().clone()),
                    exception_expires: exception.map(|e| e.expires),
                    ..self.check(p, at, facts, trail, pending, met)
                }
            })
            .collect();
        HostRow {
            host: host.to_string(),
            compliant: checks.iter().all(|c| c.status.counts()),
            checks,
        }
    }

    /// One week of the trend: statuses only, no reasons.
    fn point(&self, at: DateTime<Utc>, facts: &[HostFacts]) -> TrendPoint {
        let day = local_day(at);
        let mut hosts = 0;
        let mut overall = 0;
        let mut per_policy = [0usize; Policy::ALL.len()];
        for (host, f) in self.roster(facts) {
            hosts += 1;
            let mut all = true;
            for (i, &p) in Policy::ALL.iter().enumerate() {
                let met = self.meets(p, host, at, f);
                if self.status_given(met, p, host, day).0.counts() {
                    per_policy[i] += 1;
                } else {
                    all = false;
                }
            }
            overall += usize::from(all);
        }
        TrendPoint {
            at,
            hosts,
            overall_percent: percent(overall, hosts),
            percent: per_policy.iter().map(|&n| percent(n, hosts)).collect(),
        }
    }

    /// The exception in force on `day` for this host and policy, if any.
    fn exception(&self, policy: Policy, host: &str, day: NaiveDate) -> Option<&Exception> {
        let groups = self.fleet.groups.get(host);
        self.exceptions.iter().find(|e| {
            e.expires >= day
                && e.policies.contains(&policy)
                && (e.host.as_ref().is_some_and(|h| h.get_ref() == host)
                    || e.group
                        .as_ref()
                        .is_some_and(|g| groups.is_some_and(|gs| gs.contains(g.get_ref()))))
        })
    }

    /// The reason and evidence for a verdict already reached (`met`).
    fn check(
        &self,
        policy: Policy,
        at: DateTime<Utc>,
        facts: &HostFacts,
        trail: &HostTrail,
        pending: &[&PendingUpdate],
        met: bool,
    ) -> Check {
        let p = self.policy;
        let unknown = matches!(
            policy,
            Policy::PatchSecurity | Policy::PatchOther | Policy::Reboot
        );
        if unknown && facts.last_seen.is_none() {
            return Check {
                reason: "never reached by a job: its updates are unknown".into(),
                ..blank(policy)
            };
        }
        match policy {
            Policy::PatchSecurity => patch(
                policy,
                at,
                facts.security_pending_since,
                p.patch_security,
                pending,
                true,
                trail,
            ),
            Policy::PatchOther => patch(
                policy,
                at,
                facts.other_pending_since,
                p.patch_other,
                pending,
                false,
                trail,
            ),
            Policy::BackupRpo => {
                let mut check = recent(
                    policy,
                    at,
                    facts.last_backup,
                    p.backup_rpo,
                    "last good backup",
                    "never backed up",
                );
                check.run = trail.last_backup_run;
                if !met && let Some(failed) = &trail.failed_since_backup {
                    check.run = Some(failed.run);
                    let why = failed
                        .detail
                        .clone()
                        .or_else(|| failed.error_kind.clone())
                        .unwrap_or_else(|| failed.status.clone());
                    check.reason = format!(
                        "{} (run {} {}: {why})",
                        check.reason, failed.run, failed.status
                    );
                }
                check
            }
            Policy::RestoreTest => {
                let mut check = recent(
                    policy,
                    at,
                    facts.last_restore_test,
                    p.restore_test,
                    "last successful restore test",
                    "never restore-tested",
                );
                check.run = trail.last_restore_test_run;
                check
            }
            Policy::BackupCheck => recent(
                policy,
                at,
                facts.last_backup_check,
                p.backup_check,
                "last successful backup check",
                "backups never checked",
            ),
            Policy::LastSeen => {
                let mut check = recent(
                    policy,
                    at,
                    facts.last_seen,
                    p.last_seen,
                    "last reached",
                    "never reached by a job",
                );
                check.run = trail.last_seen_run;
                check
            }
            Policy::Reboot => reboot(at, facts.reboot_pending_since, p.reboot, trail),
            Policy::Scheduled => Check {
                reason: if met {
                    "an enabled schedule runs a playbook on it".into()
                } else {
                    "no enabled schedule runs a playbook on it".into()
                },
                ..blank(policy)
            },
        }
    }
}

fn figures(policy: &PolicySettings, hosts: &[HostRow]) -> (Vec<PolicyFigure>, PolicyFigure) {
    let figure = |p: Option<Policy>, label: String, pick: &dyn Fn(&HostRow) -> Status| {
        let statuses: Vec<Status> = hosts.iter().map(pick).collect();
        let compliant = statuses.iter().filter(|s| s.counts()).count();
        PolicyFigure {
            policy: p,
            label,
            compliant,
            exempt: statuses.iter().filter(|&&s| s == Status::Exempt).count(),
            total: hosts.len(),
            percent: percent(compliant, hosts.len()),
        }
    };
    let policies = Policy::ALL
        .iter()
        .enumerate()
        .map(|(i, &p)| figure(Some(p), label(p, policy), &|h| h.checks[i].status))
        .collect();
    let overall = figure(None, "overall (every policy)".into(), &|h| {
        if h.compliant {
            if h.checks.iter().any(|c| c.status == Status::Exempt) {
                Status::Exempt
            } else {
                Status::Compliant
            }
        } else {
            Status::NonCompliant
        }
    });
    (policies, overall)
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

fn time_to_patch(evidence: &Evidence, hosts: &[String]) -> TimeToPatch {
    let fleet: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
    let mut out = TimeToPatch {
        from: evidence.period_start,
        to: evidence.as_of,
        ..TimeToPatch::default()
    };
    for update in evidence
        .applied
        .iter()
        .filter(|u| fleet.contains(u.host.as_str()))
    {
        let waited = (update.applied - update.pending_since).num_seconds();
        let bucket = match waited {
            w if w <= 2 * 86_400 => &mut out.within_2_days,
            w if w <= 14 * 86_400 => &mut out.within_14_days,
            w if w <= 30 * 86_400 => &mut out.within_30_days,
            _ => &mut out.longer,
        };
        *bucket += 1;
        out.total += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn weeks_before_the_fleet_had_a_host_are_left_out_of_the_trend() {
        let now = Utc.with_ymd_and_hms(2026, 6, 10, 6, 0, 0).unwrap();
        let seen = HostFacts {
            host: "web1".into(),
            last_seen: Some(now),
            ..HostFacts::default()
        };
        let fleet = Fleet {
            hosts: vec!["web1".into()],
            ..Fleet::default()
        };
        let evidence = Evidence {
            as_of: now,
            facts: vec![seen.clone()],
            earlier: vec![
                (now - chrono::Duration::weeks(2), Vec::new()),
                (now - chrono::Duration::weeks(1), vec![seen]),
            ],
            known: ["web1".to_string()].into(),
            ..Evidence::default()
        };
        let report = build(&fleet, &PolicySettings::default(), &[], &evidence);
        let weeks: Vec<(DateTime<Utc>, usize)> =
            report.trend.iter().map(|p| (p.at, p.hosts)).collect();
        assert_eq!(weeks, [(now - chrono::Duration::weeks(1), 1), (now, 1)]);
    }
}
