//! A running run against its window's close.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// Where a run stands against its window's close and the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The window is open: the run may start hosts.
    Open,
    /// The window has closed: start no new host, let the ones in progress
    /// finish within the grace period.
    Draining,
    /// The grace period is over too: cancel what is still running.
    Cancel,
}

/// The phase at `now` of a run whose window closes at `window_closes`, with
/// `grace` for hosts in progress to finish.
pub fn phase(window_closes: DateTime<Utc>, grace: TimeDelta, now: DateTime<Utc>) -> Phase {
    let past_close = now.signed_duration_since(window_closes);
    if past_close < TimeDelta::zero() {
        Phase::Open
    } else if past_close < grace {
        Phase::Draining
    } else {
        Phase::Cancel
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, h, m, s)
            .single()
            .expect("time")
    }

    #[test]
    fn open_until_the_close_draining_through_the_grace_then_cancel() {
        let closes = at(5, 0, 0);
        let grace = TimeDelta::minutes(5);
        let phases: Vec<Phase> = [
            at(4, 50, 0),
            at(4, 59, 59),
            at(5, 0, 0),
            at(5, 4, 59),
            at(5, 5, 0),
            at(9, 0, 0),
        ]
        .into_iter()
        .map(|now| phase(closes, grace, now))
        .collect();
        use Phase::*;
        assert_eq!(phases, [Open, Open, Draining, Draining, Cancel, Cancel]);
    }

    #[test]
    fn no_grace_means_cancel_at_the_close() {
        assert_eq!(
            phase(at(5, 0, 0), TimeDelta::zero(), at(5, 0, 0)),
            Phase::Cancel
        );
    }
}
