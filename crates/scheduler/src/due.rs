//! What is due for a schedule between two looks of the daemon.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use nightshift_plan::CatchUp;
use nightshift_plan::next::fires_in;
use nightshift_plan::window::Opening;
use serde::Serialize;

use crate::Schedule;

/// How many fires one look lists one by one; older ones are summed up in a
/// single [`Decision::MissedMore`].
pub const LISTED_FIRES: usize = 100;

/// The most steps (a fire, or a window opening without one) one scan walks
/// before the span it looks back over is narrowed.
const SCAN_STEPS: usize = 1_000;

/// The span a look first looks back over when `since` is further back; it
/// doubles from there.
const FIRST_SPAN: TimeDelta = TimeDelta::hours(1);

/// What the daemon does about one fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Start a run of `playbook` for the fire at `fire`; it must stop
    /// starting hosts at `window_closes`. `caught_up` when it makes up for a
    /// fire missed while the daemon was down.
    Start {
        key: String,
        playbook: String,
        fire: DateTime<Utc>,
        window_closes: DateTime<Utc>,
        caught_up: bool,
    },
    /// A fire that does not become a run, and why.
    Missed {
        key: String,
        playbook: String,
        fire: DateTime<Utc>,
        why: Missed,
    },
    /// Fires after `after` and before `before` that are not listed one by
    /// one (only the newest [`LISTED_FIRES`] are, so that a daemon down for
    /// a year does not list half a million minutes). They went the way
    /// `why` says.
    MissedMore {
        key: String,
        playbook: String,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        why: Missed,
    },
}

impl Decision {
    /// The key of the schedule this is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Start { key, .. } | Self::Missed { key, .. } | Self::MissedMore { key, .. } => {
                key
            }
        }
    }
}

/// Why a fire does not become a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// The daemon was not running at the fire time and the policy is skip.
    DaemonDown,
    /// Policy once: an older missed fire, folded into the one caught-up run.
    FoldedIntoCatchUp,
    /// A run starts for a later fire of the same schedule: one look found
    /// several fires, and one run serves them all.
    Superseded,
    /// The fire's window closed before the daemon could start it.
    WindowClosed,
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DaemonDown => "the daemon was down at the fire time (catch_up = skip)",
            Self::FoldedIntoCatchUp => {
                "the daemon was down at the fire time; one run catches up for it and later fires (catch_up = once)"
            }
            Self::Superseded => "a run for a later fire of the schedule starts instead",
            Self::WindowClosed => "its window had closed by the time the daemon could start it",
        })
    }
}

/// A fire time that falls while its window is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// In the schedule's time zone.
    pub at: DateTime<Tz>,
    /// When the window opening the fire falls in closes, in the window's
    /// time zone.
    pub window_closes: DateTime<Tz>,
}

/// What is due for `entry` between `since` (exclusive; when the daemon last
/// looked) and `now` (inclusive).
///
/// Fires not more than `late_after` before `now` are on time (the daemon
/// looks every few seconds, so a fire one look ago is not missed); older
/// ones were missed, and `policy` says what becomes of them:
///
/// - [`CatchUp::Skip`]: each is [`Missed::DaemonDown`].
/// - [`CatchUp::Once`]: the newest becomes one [`Decision::Start`] with
///   `caught_up`, if the window opening it fell in is still open at `now`,
///   and older ones are [`Missed::FoldedIntoCatchUp`]; if that opening has
///   closed, they are all [`Missed::WindowClosed`].
///
/// An on-time fire whose window is still open at `now` starts a run;
/// `window_closes` is the close of the opening the fire fell in. One look
/// starts at most one run per schedule: when it finds an on-time fire, or
/// several, the newest starts and every older one is
/// [`Missed::Superseded`]. Decisions come oldest fire first.
///
/// A look over a long absence lists at most [`LISTED_FIRES`] fires, the
/// newest, and sums up the older ones in one [`Decision::MissedMore`]; the
/// work is bounded too, so a year-long gap costs a few thousand fire
/// computations, not the year's. Nothing is due when `since` is not before
/// `now` (a clock stepped back): the daemon should keep the later of the two
/// as its `since`.
pub fn due(
    entry: &Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    late_after: TimeDelta,
    policy: CatchUp,
) -> Vec<Decision> {
    if since >= now {
        return Vec::new();
    }
    let (fires, unlisted_before) = newest_fires(entry, since, now);
    let late_before = now
        .checked_sub_signed(late_after)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let is_late = |at: DateTime<Utc>| at < late_before;
    let chosen = match policy {
        CatchUp::Skip => fires.iter().rposition(|f| !is_late(f.at.to_utc())),
        CatchUp::Once => fires.len().checked_sub(1),
    };
    let outcome = match chosen.and_then(|i| fires.get(i)) {
        Some(f) if f.window_closes > now => Outcome::Started {
            caught_up: is_late(f.at.to_utc()),
        },
        Some(_) => Outcome::WindowClosed,
        None => Outcome::Nothing,
    };
    let say = Say {
        entry,
        outcome,
        policy,
    };
    let mut out = Vec::with_capacity(fires.len() + 1);
    if let Some(before) = unlisted_before {
        out.push(say.more(since, before, is_late(before)));
    }
    for (i, fire) in fires.iter().enumerate() {
        out.push(if Some(i) == chosen {
            say.chosen(fire)
        } else {
            say.missed(fire.at.to_utc(), is_late(fire.at.to_utc()))
        });
    }
    out
}

/// The next fire of `entry` after `now`, for `nightshift status`; `None`
/// when none falls inside its window within the plan's search horizon.
pub fn next_fire(entry: &Schedule, now: DateTime<Utc>) -> Option<Fire> {
    let at = fires_in(&entry.cron, entry.timezone, &entry.window, now, 1)
        .into_iter()
        .next()?;
    let window_closes = entry.window.next_opening(&at)?.close;
    Some(Fire { at, window_closes })
}

/// What became of the one fire of a look that could start a run.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Started { caught_up: bool },
    WindowClosed,
    Nothing,
}

/// Decisions about one schedule's fires in one look.
struct Say<'a> {
    entry: &'a Schedule,
    outcome: Outcome,
    policy: CatchUp,
}

impl Say<'_> {
    fn chosen(&self, fire: &Fire) -> Decision {
        match self.outcome {
            Outcome::Started { caught_up } => Decision::Start {
                key: self.entry.key.clone(),
                playbook: self.entry.playbook.clone(),
                fire: fire.at.to_utc(),
                window_closes: fire.window_closes.to_utc(),
                caught_up,
            },
            _ => self.missed_because(fire.at.to_utc(), Missed::WindowClosed),
        }
    }

    fn missed(&self, fire: DateTime<Utc>, late: bool) -> Decision {
        self.missed_because(fire, self.why(late))
    }

    fn missed_because(&self, fire: DateTime<Utc>, why: Missed) -> Decision {
        Decision::Missed {
            key: self.entry.key.clone(),
            playbook: self.entry.playbook.clone(),
            fire,
            why,
        }
    }

    fn more(&self, after: DateTime<Utc>, before: DateTime<Utc>, late: bool) -> Decision {
        Decision::MissedMore {
            key: self.entry.key.clone(),
            playbook: self.entry.playbook.clone(),
            after,
            before,
            why: self.why(late),
        }
    }

    /// Why a fire other than the chosen one does not run.
    fn why(&self, late: bool) -> Missed {
        match (self.policy, late, self.outcome) {
            (CatchUp::Skip, true, _) => Missed::DaemonDown,
            (_, _, Outcome::Started { caught_up: true }) => Missed::FoldedIntoCatchUp,
            (_, _, Outcome::Started { caught_up: false }) => Missed::Superseded,
            (_, _, Outcome::WindowClosed | Outcome::Nothing) => Missed::WindowClosed,
        }
    }
}

/// The newest [`LISTED_FIRES`] fires in (`since`, `now`], oldest first, and,
/// when older ones are left out, the instant they come before.
///
/// Walking every fire since `since` could take long (a year of an
/// every-minute schedule is half a million), so this looks back over a span
/// that doubles until it holds enough fires or reaches `since`. A span that
/// takes more than [`SCAN_STEPS`] steps to walk is halved towards the last
/// one that did not, so no scan walks more than that; a few dozen scans at
/// most.
fn newest_fires(
    entry: &Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<Fire>, Option<DateTime<Utc>>) {
    let mut short = TimeDelta::zero();
    let mut too_long: Option<TimeDelta> = None;
    let mut span = FIRST_SPAN;
    let mut found = Vec::new();
    loop {
        let from = now.checked_sub_signed(span).map_or(since, |t| t.max(since));
        match scan(entry, from, now) {
            Some(fires) if fires.len() > LISTED_FIRES || from == since => return newest(fires),
            Some(fires) => (short, found) = (span, fires),
            None => too_long = Some(span),
        }
        span = match too_long {
            None => span.checked_mul(2).unwrap_or(TimeDelta::MAX),
            Some(long) if long - short > TimeDelta::minutes(1) => short + (long - short) / 2,
            // Every fire of the span walked in full is listed; the scan
            // cannot tell how many came before.
            Some(_) => return (found, Some(now.checked_sub_signed(short).unwrap_or(since))),
        };
    }
}

/// The newest [`LISTED_FIRES`] of `fires`, and the oldest one kept when some
/// were left out.
fn newest(mut fires: Vec<Fire>) -> (Vec<Fire>, Option<DateTime<Utc>>) {
    let left_out = fires.len().saturating_sub(LISTED_FIRES);
    fires.drain(..left_out);
    let before = fires
        .first()
        .filter(|_| left_out > 0)
        .map(|f| f.at.to_utc());
    (fires, before)
}

/// The fires of `entry` in (`after`, `through`], oldest first; `None` when
/// finding them takes more than [`SCAN_STEPS`] steps.
fn scan(entry: &Schedule, after: DateTime<Utc>, through: DateTime<Utc>) -> Option<Vec<Fire>> {
    let mut at = after.with_timezone(&entry.timezone);
    let mut fires = Vec::new();
    for _ in 0..SCAN_STEPS {
        let Some(opening) = entry.window.next_opening(&at).filter(|o| o.open <= through) else {
            return Some(fires);
        };
        match first_fire(entry, &opening, &at) {
            Some(fire) if fire.at <= through => {
                at = fire.at;
                fires.push(fire);
            }
            None if opening.close <= through => at = opening.close.with_timezone(&entry.timezone),
            _ => return Some(fires),
        }
    }
    None
}

/// The first fire of `entry` after `after` inside `opening`.
fn first_fire(entry: &Schedule, opening: &Opening, after: &DateTime<Tz>) -> Option<Fire> {
    // A second before the opening, so a fire at the opening instant counts.
    let from = match opening.open.checked_sub_signed(TimeDelta::seconds(1)) {
        Some(before_open) if opening.open > *after => before_open.with_timezone(&entry.timezone),
        _ => *after,
    };
    let at = entry
        .cron
        .next_after(&from)
        .filter(|f| *f < opening.close)?;
    Some(Fire {
        at,
        window_closes: opening.close,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Weekday};
    use chrono_tz::Europe::Berlin;
    use nightshift_plan::window::{WindowRule, time_of_day};

    use super::*;

    fn entry(cron: &str, days: &[Weekday], start: &str, end: &str) -> Schedule {
        Schedule {
            key: format!("patch|{cron}|Europe/Berlin|w"),
            playbook: "patch".into(),
            cron: cron.parse().expect("cron"),
            timezone: Berlin,
            window_name: "w".into(),
            window: WindowRule {
                days: days.to_vec(),
                monthly: None,
                start: time_of_day(start).expect("start"),
                end: time_of_day(end).expect("end"),
                timezone: Berlin,
                blackout: vec![],
                freeze: vec![],
            },
            enabled: true,
            catch_up: None,
        }
    }

    fn berlin(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Berlin
            .with_ymd_and_hms(2026, 11, d, h, m, s)
            .single()
            .expect("time")
            .to_utc()
    }

    fn two_minutes() -> TimeDelta {
        TimeDelta::minutes(2)
    }

    /// (local fire time, what happened) for each decision.
    fn summary(decisions: &[Decision]) -> Vec<String> {
        let local = |t: &DateTime<Utc>| t.with_timezone(&Berlin).format("%d %H:%M").to_string();
        decisions
            .iter()
            .map(|d| match d {
                Decision::Start {
                    fire, caught_up, ..
                } => format!(
                    "{} start{}",
                    local(fire),
                    if *caught_up { " caught up" } else { "" }
                ),
                Decision::Missed { fire, why, .. } => format!("{} {why:?}", local(fire)),
                Decision::MissedMore {
                    after, before, why, ..
                } => format!("{}..{} {why:?}", local(after), local(before)),
            })
            .collect()
    }

    #[test]
    fn a_fire_since_the_last_look_starts_with_its_window_close() {
        let e = entry("30 1 * * *", &[], "01:00", "05:00");
        let decisions = due(
            &e,
            berlin(3, 1, 29, 50),
            berlin(3, 1, 30, 20),
            two_minutes(),
            CatchUp::Skip,
        );
        assert_eq!(
            decisions,
            [Decision::Start {
                key: "patch|30 1 * * *|Europe/Berlin|w".into(),
                playbook: "patch".into(),
                fire: berlin(3, 1, 30, 0),
                window_closes: berlin(3, 5, 0, 0),
                caught_up: false,
            }]
        );
    }

    #[test]
    fn since_is_exclusive_and_now_inclusive() {
        let e = entry("30 1 * * *", &[], "01:00", "05:00");
        let at = berlin(3, 1, 30, 0);
        let later = at + TimeDelta::seconds(10);
        assert_eq!(
            due(
                &e,
                at - TimeDelta::seconds(10),
                at,
                two_minutes(),
                CatchUp::Skip
            )
            .len(),
            1
        );
        assert!(due(&e, at, later, two_minutes(), CatchUp::Skip).is_empty());
    }

    #[test]
    fn nothing_is_due_when_the_clock_stands_still_or_steps_back() {
        let e = entry("* * * * *", &[], "00:00", "23:59");
        let now = berlin(3, 2, 0, 30);
        assert!(due(&e, now, now, two_minutes(), CatchUp::Once).is_empty());
        assert!(
            due(
                &e,
                now + TimeDelta::hours(1),
                now,
                two_minutes(),
                CatchUp::Once
            )
            .is_empty()
        );
    }

    #[test]
    fn a_fire_exactly_late_after_ago_is_on_time_and_one_more_second_is_missed() {
        let e = entry("30 1 * * *", &[], "01:00", "05:00");
        let fire = berlin(3, 1, 30, 0);
        let on_time = due(
            &e,
            fire - TimeDelta::hours(1),
            fire + two_minutes(),
            two_minutes(),
            CatchUp::Skip,
        );
        assert_eq!(summary(&on_time), ["03 01:30 start"]);
        let late = fire + two_minutes() + TimeDelta::seconds(1);
        let missed = due(
            &e,
            fire - TimeDelta::hours(1),
            late,
            two_minutes(),
            CatchUp::Skip,
        );
        assert_eq!(summary(&missed), ["03 01:30 DaemonDown"]);
    }

    #[test]
    fn several_fires_in_one_look_start_one_run_for_the_newest() {
        let e = entry("* * * * *", &[], "00:00", "23:59");
        let decisions = due(
            &e,
            berlin(3, 2, 0, 30),
            berlin(3, 2, 3, 10),
            TimeDelta::minutes(5),
            CatchUp::Skip,
        );
        assert_eq!(
            summary(&decisions),
            [
                "03 02:01 Superseded",
                "03 02:02 Superseded",
                "03 02:03 start"
            ]
        );
    }

    #[test]
    fn an_on_time_fire_whose_window_just_closed_is_missed() {
        let e = entry("59 4 * * *", &[], "01:00", "05:00");
        let decisions = due(
            &e,
            berlin(3, 4, 58, 50),
            berlin(3, 5, 0, 10),
            two_minutes(),
            CatchUp::Skip,
        );
        assert_eq!(summary(&decisions), ["03 04:59 WindowClosed"]);
    }

    #[test]
    fn with_catch_up_once_an_on_time_run_makes_up_for_the_missed_fires() {
        let e = entry("0 * * * *", &[], "00:00", "23:59");
        let decisions = due(
            &e,
            berlin(3, 0, 30, 0),
            berlin(3, 3, 0, 30),
            two_minutes(),
            CatchUp::Once,
        );
        assert_eq!(
            summary(&decisions),
            [
                "03 01:00 Superseded",
                "03 02:00 Superseded",
                "03 03:00 start"
            ]
        );
    }

    #[test]
    fn with_catch_up_once_older_missed_fires_fold_into_the_newest() {
        let e = entry("0 * * * *", &[], "00:00", "23:59");
        let decisions = due(
            &e,
            berlin(3, 0, 30, 0),
            berlin(3, 3, 10, 0),
            two_minutes(),
            CatchUp::Once,
        );
        assert_eq!(
            summary(&decisions),
            [
                "03 01:00 FoldedIntoCatchUp",
                "03 02:00 FoldedIntoCatchUp",
                "03 03:00 start caught up"
            ]
        );
    }

    #[test]
    fn a_long_absence_lists_the_newest_fires_and_sums_up_the_rest() {
        let e = entry("* * * * *", &[], "00:00", "23:59");
        let since = berlin(1, 12, 0, 0);
        let now = berlin(20, 12, 0, 30);
        let decisions = due(&e, since, now, two_minutes(), CatchUp::Skip);
        assert_eq!(decisions.len(), LISTED_FIRES + 1);
        let shown = summary(&decisions);
        assert_eq!(shown[0], "01 12:00..20 10:21 DaemonDown");
        assert_eq!(shown[1], "20 10:21 DaemonDown");
        assert_eq!(shown[98], "20 11:58 DaemonDown");
        assert_eq!(shown[99], "20 11:59 Superseded");
        assert_eq!(shown[LISTED_FIRES], "20 12:00 start");
    }

    #[test]
    fn the_reasons_read_as_sentences() {
        assert_eq!(
            Missed::DaemonDown.to_string(),
            "the daemon was down at the fire time (catch_up = skip)"
        );
        assert!(
            Missed::FoldedIntoCatchUp
                .to_string()
                .contains("catch_up = once")
        );
        assert!(
            Missed::WindowClosed
                .to_string()
                .contains("window had closed")
        );
        assert!(Missed::Superseded.to_string().contains("later fire"));
    }

    #[test]
    fn the_next_fire_is_inside_the_window() {
        let e = entry("30 * * * *", &[Weekday::Tue], "01:00", "03:00");
        // Monday 2 November 2026, noon.
        let next = next_fire(&e, berlin(2, 12, 0, 0)).expect("fires");
        assert_eq!(next.at.to_utc(), berlin(3, 1, 30, 0));
        assert_eq!(next.window_closes.to_utc(), berlin(3, 3, 0, 0));
        let never = entry("0 12 * * *", &[Weekday::Tue], "01:00", "03:00");
        assert_eq!(next_fire(&never, berlin(2, 12, 0, 0)), None);
    }
}
