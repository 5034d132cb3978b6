//! Triggers: runs asked for by `nightshift trigger`, started when their
//! window (or `--ignore-window`) allows.

use super::*;
use chrono::{DateTime, Utc};
use nightshift_catalog::{TriggerRow, TriggerState};

impl Daemon {
    /// Trigger requests: started when their window is open (or ignored),
    /// waiting otherwise, refused when they cannot run at all.
    pub(super) async fn triggers(&mut self, now: DateTime<Utc>) {
        let requests = match self.catalog.open_triggers().await {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(%err, "cannot read trigger requests");
                return;
            }
        };
        for request in requests {
            self.trigger(request, now).await;
        }
    }

    pub(super) async fn trigger(&mut self, request: TriggerRow, now: DateTime<Utc>) {
        let gate = match self.runs.iter().find(|a| a.playbook == request.playbook) {
            Some(busy) => Err(format!(
                "waiting: {} is running{}; this request starts after it",
                request.playbook,
                busy.run_id()
                    .map(|r| format!(" (run {})", r.0))
                    .unwrap_or_default()
            )),
            None if request.ignore_window => Ok(None),
            None => self.trigger_window(&request.playbook, now),
        };
        let window = match gate {
            Ok(window) => window,
            Err(why) => {
                if request.state != "waiting" || request.detail.as_deref() != Some(&why) {
                    tracing::info!(request = request.id, "{why}");
                    self.set_trigger(request.id, TriggerState::Waiting, Some(&why))
                        .await;
                }
                return;
            }
        };
        let start = Start {
            playbook: request.playbook.clone(),
            limit: request.host_limit.clone(),
            host_windows: !request.ignore_window,
            window,
            origin: Origin::Trigger(request.id),
            operator: Some(request.requested_by.clone()),
        };
        match self.prepare(&start) {
            Ok(rollout) => match self.catalog.claim_trigger(request.id).await {
                Ok(true) => self.spawn(start, rollout),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "cannot claim a trigger request; trying again next tick")
                }
            },
            Err(err) => {
                let why = said(&err);
                tracing::warn!(request = request.id, "refused: {why}");
                self.set_trigger(request.id, TriggerState::Refused, Some(&why))
                    .await;
            }
        }
    }

    pub(super) async fn set_trigger(&self, id: i64, state: TriggerState, detail: Option<&str>) {
        if let Err(err) = self.catalog.update_trigger(id, state, detail).await {
            tracing::warn!(%err, "cannot record a trigger request's state");
        }
    }

    /// The window a triggered run keeps: one of the windows of the
    /// schedules naming the playbook (disabled ones too: disabling a
    /// schedule does not open its hours) that is open now. A playbook no
    /// schedule names has no window but its hosts' own.
    pub(super) fn trigger_window(
        &self,
        playbook: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<RunWindow>, String> {
        let windows = self.playbook_windows(playbook);
        if windows.is_empty() {
            return Ok(None);
        }
        let open = open_window(
            windows.iter().map(|(name, rule)| (name.as_str(), rule)),
            now,
        );
        if let Some(window) = open {
            return Ok(Some(window));
        }
        let next = windows
            .iter()
            .filter_map(|(name, rule)| Some((name, rule.next_opening(&now)?.open)))
            .min_by_key(|(_, open)| open.to_utc());
        Err(match next {
            Some((name, open)) => format!(
                "waiting: the window {name} is closed; it opens at {} (--ignore-window --reason … runs it now)",
                open.format("%Y-%m-%d %H:%M %Z")
            ),
            None => "waiting: the playbook's windows never open".into(),
        })
    }

    /// The windows of every schedule naming `playbook`, enabled or not.
    pub(super) fn playbook_windows(
        &self,
        playbook: &str,
    ) -> Vec<(String, nightshift_plan::window::WindowRule)> {
        self.plan
            .schedules
            .iter()
            .filter(|s| s.playbook == playbook)
            .map(|s| (s.window_name.clone(), s.window.clone()))
            .collect()
    }
}
