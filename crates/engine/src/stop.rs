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

/// The handle a daemon keeps on a run to stop it; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    reason: Arc<Mutex<Option<(StopKind, String)>>>,
    cancel: CancellationToken,
}

impl Stop {
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

    /// Why the run is draining, if it is.
    pub fn draining(&self) -> Option<(StopKind, String)> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The token commands of this run are stopped by.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
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
}
