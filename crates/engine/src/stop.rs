//! A run stopped from outside: its maintenance window closed, or the daemon
//! was asked to stop. Stopping has two stages, because a step cut off
//! half-way (an upgrade, a reboot) is worse than one allowed to end: first
//! the run *drains* (no batch, host or step starts any more), then, after
//! the grace period the daemon keeps, steps still in flight are
//! *cancelled* (the transport stops their remote process groups).

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why a run is being stopped, typed for the catalog's `error_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// The window closed (`window_closed`).
    WindowClosed,
    /// The daemon is shutting down (`stopped`).
    Shutdown,
}

impl StopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WindowClosed => "window_closed",
            Self::Shutdown => "stopped",
        }
    }
}

/// The handle a daemon keeps on a run to stop it; cloning shares it. A
/// host's job has a child of its run's: stopping the run stops the host,
/// and a host's own window can stop the host alone.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    reason: Arc<Mutex<Option<(StopKind, String)>>>,
    cancel: CancellationToken,
    parent: Option<Box<Stop>>,
}

impl Stop {
    /// A stop that follows this one, and can also be stopped on its own.
    pub fn child(&self) -> Self {
        Self {
            reason: Arc::default(),
            cancel: self.cancel.child_token(),
            parent: Some(Box::new(self.clone())),
        }
    }

    /// Nothing new starts from now on. The first reason given stays.
    pub fn drain(&self, kind: StopKind, reason: impl Into<String>) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some((kind, reason.into()));
        }
    }

    /// Steps in flight are stopped now (draining first if not yet).
    pub fn cancel(&self, kind: StopKind, reason: impl Into<String>) {
        self.drain(kind, reason);
        self.cancel.cancel();
    }

    /// Why the run is draining, if it is (its own reason first).
    pub fn draining(&self) -> Option<(StopKind, String)> {
        let own = self.reason.lock().ok().and_then(|r| r.clone());
        own.or_else(|| self.parent.as_ref()?.draining())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The token commands of this run are stopped by.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// When a window closes on a run or a host: drain at `closes`, cancel
/// after the grace period.
#[derive(Debug, Clone)]
pub struct Closing {
    pub closes: chrono::DateTime<chrono::Utc>,
    pub grace: std::time::Duration,
    /// "the window weeknights closed at 2026-12-01 05:00 CET"
    pub reason: String,
}

impl Closing {
    /// Keeps `stop` to this closing by `clock`, looking every second,
    /// until cancelled or dropped.
    pub async fn keep(self, stop: Stop, clock: Arc<dyn nightshift_scheduler::Clock>) {
        let grace = chrono::TimeDelta::from_std(self.grace).unwrap_or(chrono::TimeDelta::MAX);
        let cancel_at = self.closes.checked_add_signed(grace).unwrap_or(self.closes);
        loop {
            let now = clock.now();
            if now >= cancel_at {
                stop.cancel(StopKind::WindowClosed, &self.reason);
                return;
            }
            if now >= self.closes {
                stop.drain(StopKind::WindowClosed, &self.reason);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_stays_and_cancel_implies_drain() {
        let stop = Stop::default();
        assert!(stop.draining().is_none());
        stop.drain(StopKind::WindowClosed, "the window closed at 05:00");
        stop.cancel(StopKind::Shutdown, "the daemon is stopping");
        assert_eq!(
            stop.draining(),
            Some((StopKind::WindowClosed, "the window closed at 05:00".into()))
        );
        assert!(stop.is_cancelled() && stop.token().is_cancelled());
        let other = Stop::default();
        other.cancel(StopKind::Shutdown, "bye");
        assert_eq!(other.draining().map(|(k, _)| k), Some(StopKind::Shutdown));
    }

    #[test]
    fn a_child_follows_its_parent_and_stops_alone() {
        let run = Stop::default();
        let host = run.child();
        host.drain(StopKind::WindowClosed, "the host's window closed");
        assert!(run.draining().is_none(), "the run goes on");
        let other = run.child();
        run.cancel(StopKind::Shutdown, "bye");
        assert!(other.is_cancelled());
        assert_eq!(other.draining().map(|(k, _)| k), Some(StopKind::Shutdown));
        assert_eq!(
            host.draining().map(|(_, r)| r).as_deref(),
            Some("the host's window closed")
        );
    }
}
