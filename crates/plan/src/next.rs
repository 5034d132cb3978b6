//! When schedules fire next: cron fire times that fall inside their window.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::Plan;
use crate::cron::Cron;
use crate::window::{HORIZON_DAYS, WindowRule};

/// The first `count` fire times of `cron` in `tz`, strictly after `from`,
/// that fall while the window is open. Fire times outside the window are not
/// runs, so they are skipped a whole closed stretch at a time.
pub fn fires_in(
    cron: &Cron,
    tz: Tz,
    rule: &WindowRule,
    from: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Tz>> {
    let horizon = from
        .checked_add_signed(Duration::days(HORIZON_DAYS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut after = from.with_timezone(&tz);
    let mut fires = Vec::new();
    while fires.len() < count && after < horizon {
        let Some(opening) = rule.next_opening(&after) else {
            break;
        };
        let search_from = if opening.open > after {
            (opening.open - Duration::seconds(1)).with_timezone(&tz)
        } else {
            after
        };
        match cron.next_after(&search_from) {
            Some(fire) if fire < opening.close => {
                fires.push(fire);
                after = fire;
            }
            _ => after = opening.close.with_timezone(&tz),
        }
    }
    fires
}

/// One upcoming run.
#[derive(Debug, Clone, Serialize)]
pub struct Upcoming {
    pub playbook: String,
    pub cron: String,
    pub window: String,
    pub timezone: String,
    /// Local time in the schedule's time zone, RFC 3339.
    pub local: DateTime<Tz>,
    pub utc: DateTime<Utc>,
    /// When the window closes on this run.
    pub window_closes: DateTime<Tz>,
}

/// A schedule that cannot run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Stuck {
    pub playbook: String,
    pub cron: String,
    pub window: String,
    pub reason: String,
}

/// The next `count` runs across every enabled schedule, soonest first, and
/// the schedules that will not run again within the horizon.
pub fn upcoming(plan: &Plan, from: DateTime<Utc>, count: usize) -> (Vec<Upcoming>, Vec<Stuck>) {
    let mut runs = Vec::new();
    let mut stuck = Vec::new();
    for s in plan.schedules.iter().filter(|s| s.enabled) {
        let fires = fires_in(&s.cron, s.timezone, &s.window, from, count);
        if fires.is_empty() {
            stuck.push(Stuck {
                playbook: s.playbook.clone(),
                cron: s.cron.source().to_string(),
                window: s.window_name.clone(),
                reason: format!(
                    "the cron expression never fires while the window is open (within {HORIZON_DAYS} days)"
                ),
            });
        }
        for fire in fires {
            let Some(opening) = s.window.next_opening(&fire) else {
                continue;
            };
            runs.push(Upcoming {
                playbook: s.playbook.clone(),
                cron: s.cron.source().to_string(),
                window: s.window_name.clone(),
                timezone: s.timezone.name().to_string(),
                utc: fire.with_timezone(&Utc),
                local: fire,
                window_closes: opening.close,
            });
        }
    }
    runs.sort_by(|a, b| (a.utc, &a.playbook).cmp(&(b.utc, &b.playbook)));
    runs.truncate(count);
    (runs, stuck)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    use super::*;
    use crate::window::time_of_day;

    #[test]
    fn only_fires_inside_the_window_count() {
        let cron: Cron = "0 * * * *".parse().expect("cron");
        let rule = WindowRule {
            days: vec![chrono::Weekday::Sat],
            monthly: None,
            start: time_of_day("01:00").expect("t"),
            end: time_of_day("03:00").expect("t"),
            timezone: Berlin,
            blackout: vec![],
            freeze: vec![],
        };
        let from = Utc
            .with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
            .single()
            .expect("t");
        let fires = fires_in(&cron, Berlin, &rule, from, 3);
        let hours: Vec<String> = fires
            .iter()
            .map(|f| f.format("%a %H:%M").to_string())
            .collect();
        assert_eq!(hours, ["Sat 01:00", "Sat 02:00", "Sat 01:00"]);
    }
}
