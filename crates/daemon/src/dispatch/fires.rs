//! Schedules: which fires came due since the daemon last looked, and the
//! runs they start.

use super::*;
use chrono::{DateTime, Utc};
use nightshift_catalog::{FireOutcome, FireRecord};
use nightshift_engine::rollout::Rollout;
use nightshift_scheduler::{Decision, Schedule, due};

impl Daemon {
    /// Fires due since the last look: started, or recorded as missed or
    /// busy.
    pub(super) async fn fires(&mut self, now: DateTime<Utc>) {
        for entry in self.entries.clone() {
            let Some(since) = self.cursor(&entry.key, now).await else {
                continue;
            };
            self.cursors.insert(entry.key.clone(), now.max(since));
            let policy = entry
                .catch_up
                .unwrap_or(self.settings.config.daemon.catch_up);
            let decisions = due(&entry, since, now, LATE_AFTER, policy);
            if !decisions.is_empty() && !self.decide(&entry, decisions, now).await {
                // Not recorded: look at the same fires again next tick.
                self.cursors.insert(entry.key.clone(), since);
            }
        }
    }

    /// Where a schedule's fires were last looked at; a schedule seen for the
    /// first time starts from now (it has no past to catch up on).
    pub(super) async fn cursor(&mut self, key: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Some(at) = self.cursors.get(key) {
            return Some(*at);
        }
        match self.catalog.schedule_cursor(key).await {
            Ok(Some(at)) => Some(at),
            Ok(None) => {
                if let Err(err) = self.catalog.record_fires(key, now, &[]).await {
                    tracing::warn!(%err, "cannot record a schedule's cursor");
                }
                self.cursors.insert(key.to_string(), now);
                None
            }
            Err(err) => {
                tracing::warn!(%err, "cannot read a schedule's cursor; looking again next tick");
                None
            }
        }
    }

    /// Starts or records the decisions; `false` when they could not be
    /// recorded (and nothing was started).
    pub(super) async fn decide(
        &mut self,
        entry: &Schedule,
        decisions: Vec<Decision>,
        now: DateTime<Utc>,
    ) -> bool {
        let mut records = Vec::new();
        let mut start = None;
        for decision in decisions {
            let (fire, outcome, detail) = match decision {
                Decision::Start {
                    fire,
                    window_closes,
                    caught_up,
                    ..
                } => {
                    let outcome = if caught_up {
                        FireOutcome::CaughtUp
                    } else {
                        FireOutcome::Started
                    };
                    match self.schedule_launch(entry, window_closes) {
                        Err(busy_or_broken) => busy_or_broken.record(fire),
                        Ok((wanted, rollout)) => {
                            start = Some((records.len(), wanted, rollout));
                            (fire, outcome, None)
                        }
                    }
                }
                Decision::Missed { fire, why, .. } => {
                    (fire, FireOutcome::Missed, Some(why.to_string()))
                }
                Decision::MissedMore {
                    after, before, why, ..
                } => (
                    before,
                    FireOutcome::Missed,
                    Some(format!(
                        "{why}; so was every fire from {} to {}",
                        after.format("%Y-%m-%d %H:%M UTC"),
                        before.format("%Y-%m-%d %H:%M UTC")
                    )),
                ),
            };
            if outcome == FireOutcome::Missed {
                tracing::warn!(playbook = entry.playbook, fire = %fire, "missed: {}", detail.as_deref().unwrap_or(""));
            }
            records.push(FireRecord {
                schedule: &entry.key,
                playbook: &entry.playbook,
                fire,
                outcome,
                detail,
            });
        }
        let ids = match self.catalog.record_fires(&entry.key, now, &records).await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "cannot record the schedule's fires; trying again next tick");
                return false;
            }
        };
        if let Some((index, wanted, rollout)) = start {
            let rollout = match ids.get(index) {
                Some(fire) => rollout.answering(*fire),
                None => rollout,
            };
            self.spawn(wanted, rollout);
        }
        true
    }

    /// The run for a schedule's fire, unless the previous one still runs.
    pub(super) fn schedule_launch(
        &self,
        entry: &Schedule,
        window_closes: DateTime<Utc>,
    ) -> Result<(Start, Rollout), NotStarted> {
        let origin = Origin::Schedule(entry.key.clone());
        if self.runs.iter().any(|a| a.origin == origin) {
            return Err(NotStarted::Busy);
        }
        let start = Start {
            playbook: entry.playbook.clone(),
            limit: None,
            host_windows: true,
            window: Some(RunWindow::new(
                &entry.window_name,
                window_closes.with_timezone(&entry.window.timezone),
            )),
            origin,
            operator: None,
        };
        let rollout = self.prepare(&start).map_err(NotStarted::Broken)?;
        Ok((start, rollout))
    }
}
