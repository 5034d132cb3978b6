//! Hosts deferred to their own window get a run of their own once it opens.

use super::*;
use chrono::{DateTime, Utc};
use nightshift_catalog::DeferredHost;
use nightshift_engine::launch::{find_playbook, hosts_of};
use nightshift_scheduler::Schedule;
use std::collections::{BTreeMap, HashSet};

impl Daemon {
    /// Hosts deferred to their own window whose window is open now get a
    /// run of their own, one per playbook at a time.
    pub(super) async fn deferred(&mut self, now: DateTime<Utc>) {
        if self
            .last_deferred
            .is_some_and(|at| now - at < DEFERRED_EVERY)
        {
            return;
        }
        self.last_deferred = Some(now);
        let waiting = match self.catalog.deferred_hosts().await {
            Ok(hosts) => hosts,
            Err(err) => {
                tracing::warn!(%err, "cannot read deferred hosts");
                return;
            }
        };
        let mut by_playbook: BTreeMap<String, Vec<DeferredHost>> = BTreeMap::new();
        for host in waiting {
            by_playbook
                .entry(host.playbook.clone())
                .or_default()
                .push(host);
        }
        for (playbook, hosts) in by_playbook {
            let picking_up = self
                .runs
                .iter()
                .any(|a| a.playbook == playbook && a.origin == Origin::Deferred);
            if picking_up {
                continue;
            }
            if let Some(start) = self.deferred_start(&playbook, &hosts, now) {
                match self.prepare(&start) {
                    Ok(rollout) => self.spawn(start, rollout),
                    Err(err) => self.say_once(format!(
                        "cannot pick up the hosts deferred from {playbook}: {}",
                        said(&err)
                    )),
                }
            }
        }
    }

    /// The run for a playbook's deferred hosts whose own window is open
    /// now. The playbook's schedule windows still rule: none while it has
    /// no enabled schedule, none on their blackout and freeze dates; a host
    /// that lost its own window waits for a schedule window. Hosts another
    /// run of the playbook has, or that the playbook no longer targets,
    /// are left out.
    pub(super) fn deferred_start(
        &self,
        playbook: &str,
        hosts: &[DeferredHost],
        now: DateTime<Utc>,
    ) -> Option<Start> {
        let mine: Vec<&Schedule> = self
            .entries
            .iter()
            .filter(|e| e.playbook == playbook)
            .collect();
        let blocked = |e: &&Schedule| {
            e.window
                .is_blocked(now.with_timezone(&e.window.timezone).date_naive())
        };
        if mine.is_empty() || mine.iter().all(blocked) {
            return None;
        }
        let targeted: HashSet<String> = find_playbook(&self.plan, playbook)
            .ok()
            .and_then(|p| hosts_of(&self.plan.inventory, p, None).ok())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let taken: HashSet<&str> = self
            .runs
            .iter()
            .filter(|a| a.playbook == playbook)
            .flat_map(|a| a.hosts.iter().map(String::as_str))
            .collect();
        let mut windows = Vec::new();
        let mut ready = Vec::new();
        for host in hosts {
            if !targeted.contains(&host.host) || taken.contains(host.host.as_str()) {
                continue;
            }
            let window = match self.plan.host_windows.get(&host.host) {
                Some(nightshift_plan::HostWindow { name, rule }) => rule
                    .next_opening(&now)
                    .filter(|o| o.open <= now)
                    .map(|o| RunWindow::new(name, o.close)),
                None => open_window(
                    mine.iter().map(|e| (e.window_name.as_str(), &e.window)),
                    now,
                ),
            };
            if let Some(window) = window {
                windows.push(window);
                ready.push(host.host.clone());
            }
        }
        let window = windows.into_iter().min_by_key(|w| w.closes)?;
        Some(Start {
            playbook: playbook.to_string(),
            limit: Some(ready.join(",")),
            host_windows: true,
            window: Some(window),
            origin: Origin::Deferred,
            operator: None,
        })
    }
}
