//! The scheduler driven through weeks of simulated time by a simulated
//! daemon, asserting exactly which runs start when.

mod common;
mod property;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Europe::Berlin;
use chrono_tz::Tz;
use common::{Daemon, WEEKDAY_TIME, local, schedules};
use nightshift_scheduler::{CatchUp, Decision, LISTED_FIRES, Missed, Phase};

fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    local(Berlin, y, mo, d, h, mi)
}

/// One schedule of `playbook = "p"` in Europe/Berlin, in window `w`.
fn schedule(cron: &str, window: &str) -> String {
    format!(
        "[[schedule]]\nplaybook = \"p\"\ncron = \"{cron}\"\ntimezone = \"Europe/Berlin\"\nwindow = \"w\"\n\n[windows.w]\n{window}\n"
    )
}

const WEEKNIGHTS: &str =
    "days = [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\"]\nstart = \"01:00\"\nend = \"05:00\"";

fn daemon(cron: &str, window: &str, start: DateTime<Utc>) -> Daemon {
    Daemon::new(schedules(&schedule(cron, window)), start)
}

#[test]
fn weeknight_patching_runs_four_times_a_week_inside_the_window() {
    let mut d = daemon("30 1 * * Tue-Fri", WEEKNIGHTS, berlin(2026, 11, 2, 0, 0));
    d.run_until(berlin(2026, 11, 23, 0, 0));
    let week = |dates: [u32; 4]| {
        ["Tue", "Wed", "Thu", "Fri"]
            .into_iter()
            .zip(dates)
            .map(|(day, date)| format!("{day} 11-{date:02} 01:30"))
    };
    let expected: Vec<String> = week([3, 4, 5, 6])
        .chain(week([10, 11, 12, 13]))
        .chain(week([17, 18, 19, 20]))
        .collect();
    assert_eq!(d.starts(Berlin, WEEKDAY_TIME), expected);
    assert_eq!(d.missed(Berlin), []);
    for run in &d.runs {
        // Each run may start hosts until 05:00 the same night.
        assert_eq!(
            run.window_closes - run.fire,
            TimeDelta::minutes(210),
            "{run:?}"
        );
        assert_eq!(run.started, run.fire, "looks fall on whole minutes");
    }
}

#[test]
fn blackout_dates_and_a_freeze_hold_runs_back_and_runs_resume_after() {
    let window = format!(
        "{WEEKNIGHTS}\nblackout = [\"2026-12-24\"]\nfreeze = [{{ from = \"2026-12-28\", to = \"2027-01-03\", reason = \"year end\" }}]"
    );
    let mut d = daemon("30 1 * * Tue-Fri", &window, berlin(2026, 12, 21, 0, 0));
    d.run_until(berlin(2027, 1, 11, 0, 0));
    assert_eq!(
        d.starts(Berlin, WEEKDAY_TIME),
        [
            "Tue 12-22 01:30",
            "Wed 12-23 01:30",
            // Thursday the 24th is blacked out; the freeze takes the week after.
            "Fri 12-25 01:30",
            "Tue 01-05 01:30",
            "Wed 01-06 01:30",
            "Thu 01-07 01:30",
            "Fri 01-08 01:30",
        ]
    );
    // A blocked night is no window at all, so its fire is not a missed run.
    assert_eq!(d.missed(Berlin), []);
}

#[test]
fn a_night_running_into_a_freeze_stops_at_its_midnight() {
    let window = "start = \"22:00\"\nend = \"04:00\"\nfreeze = [{ from = \"2026-12-19\", to = \"2026-12-20\" }]";
    let mut d = daemon("0 * * * *", window, berlin(2026, 12, 18, 12, 0));
    d.run_until(berlin(2026, 12, 22, 12, 0));
    assert_eq!(
        d.starts(Berlin, "%a %H:%M"),
        [
            "Fri 22:00",
            "Fri 23:00", // clipped at the frozen Saturday's midnight
            "Mon 22:00",
            "Mon 23:00",
            "Tue 00:00",
            "Tue 01:00",
            "Tue 02:00",
            "Tue 03:00",
        ]
    );
    let friday = &d.runs[0];
    assert_eq!(friday.window_closes, berlin(2026, 12, 19, 0, 0));
}

#[test]
fn month_rule_windows_open_once_a_month_on_the_right_day() {
    let text = r#"
[[schedule]]
playbook = "patch"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
window = "patch-tuesday"

[[schedule]]
playbook = "patch-weekend"
cron = "0 2 * * Sat"
timezone = "Europe/Berlin"
window = "patch-weekend"

[windows.patch-tuesday]
monthly = "second Tuesday"
start = "01:00"
end = "05:00"

[windows.patch-weekend]
monthly = "Saturday after second Tuesday"
start = "01:00"
end = "07:00"
"#;
    let mut d = Daemon::new(schedules(text), berlin(2026, 11, 1, 0, 0)).tick(TimeDelta::minutes(1));
    d.run_until(berlin(2027, 2, 1, 0, 0));
    let starts: Vec<String> = d
        .log
        .iter()
        .filter_map(|(_, decision)| match decision {
            Decision::Start { playbook, fire, .. } => Some(format!(
                "{playbook} {}",
                fire.with_timezone(&Berlin).format("%a %Y-%m-%d %H:%M")
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [
            "patch Tue 2026-11-10 02:00",
            "patch-weekend Sat 2026-11-14 02:00",
            "patch Tue 2026-12-08 02:00",
            "patch-weekend Sat 2026-12-12 02:00",
            "patch Tue 2027-01-12 02:00",
            "patch-weekend Sat 2027-01-16 02:00",
        ]
    );
    assert_eq!(d.missed(Berlin), []);
}

const EVERY_NIGHT: &str = "start = \"01:00\"\nend = \"05:00\"";
const WITH_ZONE: &str = "%a %m-%d %H:%M %Z";

#[test]
fn spring_forward_fires_once_right_after_the_jump() {
    let mut d = daemon("30 2 * * *", EVERY_NIGHT, berlin(2026, 3, 27, 0, 0));
    d.run_until(berlin(2026, 3, 31, 0, 0));
    assert_eq!(
        d.starts(Berlin, WITH_ZONE),
        [
            "Fri 03-27 02:30 CET",
            "Sat 03-28 02:30 CET",
            "Sun 03-29 03:00 CEST",
            "Mon 03-30 02:30 CEST",
        ]
    );
    let sunday = &d.runs[2];
    assert_eq!(sunday.fire, utc(2026, 3, 29, 1, 0));
    // 01:00 CET to 05:00 CEST is three hours that night.
    assert_eq!(sunday.window_closes, utc(2026, 3, 29, 3, 0));
}

#[test]
fn fall_back_fires_once_at_the_first_of_the_two_times() {
    let mut d = daemon("30 2 * * *", EVERY_NIGHT, berlin(2026, 10, 23, 0, 0));
    d.run_until(berlin(2026, 10, 27, 0, 0));
    assert_eq!(
        d.starts(Berlin, WITH_ZONE),
        [
            "Fri 10-23 02:30 CEST",
            "Sat 10-24 02:30 CEST",
            "Sun 10-25 02:30 CEST",
            "Mon 10-26 02:30 CET",
        ]
    );
    let sunday = &d.runs[2];
    assert_eq!(sunday.fire, utc(2026, 10, 25, 0, 30));
    assert_eq!(sunday.window_closes, utc(2026, 10, 25, 4, 0));
    assert_eq!(d.missed(Berlin), []);
}

#[test]
fn an_hourly_schedule_across_both_jumps_keeps_one_fire_per_wall_clock_hour() {
    let mut d = daemon("0 * * * *", EVERY_NIGHT, berlin(2026, 3, 29, 0, 0));
    d.run_until(berlin(2026, 3, 29, 12, 0));
    // 02:00 does not exist; it fires right after the jump, once with 03:00.
    assert_eq!(
        d.starts(Berlin, "%H:%M %Z"),
        ["01:00 CET", "03:00 CEST", "04:00 CEST"]
    );
    let mut d = daemon("0 * * * *", EVERY_NIGHT, berlin(2026, 10, 25, 0, 0));
    d.run_until(berlin(2026, 10, 25, 12, 0));
    // 02:00 comes twice; it fires at the first only.
    assert_eq!(
        d.starts(Berlin, "%H:%M %Z"),
        ["01:00 CEST", "02:00 CEST", "03:00 CET", "04:00 CET"]
    );
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    local(Tz::UTC, y, mo, d, h, mi)
}

#[test]
fn a_window_crossing_midnight_fires_for_the_night_it_opens_on() {
    let window = "days = [\"Fri\"]\nstart = \"22:00\"\nend = \"04:00\"";
    let mut d = daemon("0 * * * *", window, berlin(2026, 11, 2, 0, 0));
    d.run_until(berlin(2026, 11, 16, 0, 0));
    let night = |fri: u32| {
        let sat = fri + 1;
        [
            format!("Fri 11-{fri:02} 22:00"),
            format!("Fri 11-{fri:02} 23:00"),
            format!("Sat 11-{sat:02} 00:00"),
            format!("Sat 11-{sat:02} 01:00"),
            format!("Sat 11-{sat:02} 02:00"),
            format!("Sat 11-{sat:02} 03:00"),
        ]
    };
    let expected: Vec<String> = night(6).into_iter().chain(night(13)).collect();
    // Thursday nights, and the Saturday evenings after, start nothing.
    assert_eq!(d.starts(Berlin, WEEKDAY_TIME), expected);
    for run in &d.runs {
        let close = run.window_closes.with_timezone(&Berlin);
        assert_eq!(close.format("%a %H:%M").to_string(), "Sat 04:00");
    }
}

/// A daily 01:30 run in a 01:00-05:00 window, whose daemon is down from
/// Monday noon until `back`.
fn down_from_monday_noon(policy: CatchUp, back: DateTime<Utc>) -> Daemon {
    let mut d = daemon("30 1 * * *", EVERY_NIGHT, berlin(2026, 11, 2, 0, 0)).policy(policy);
    d.run_until(berlin(2026, 11, 2, 12, 0));
    d.down_until(back);
    d.run_until(berlin(2026, 11, 5, 12, 0));
    d
}

#[test]
fn catch_up_skip_reports_the_fires_the_daemon_was_down_for_and_runs_none() {
    let d = down_from_monday_noon(CatchUp::Skip, berlin(2026, 11, 4, 2, 0));
    assert_eq!(
        d.starts(Berlin, WEEKDAY_TIME),
        ["Mon 11-02 01:30", "Thu 11-05 01:30"]
    );
    assert_eq!(
        d.missed(Berlin),
        [
            ("Tue 11-03 01:30".to_string(), Missed::DaemonDown),
            ("Wed 11-04 01:30".to_string(), Missed::DaemonDown),
        ]
    );
    // Both are reported at the first look after the restart.
    let reported: Vec<DateTime<Utc>> = d
        .log
        .iter()
        .filter(|(_, decision)| matches!(decision, Decision::Missed { .. }))
        .map(|(at, _)| *at)
        .collect();
    let first_look = berlin(2026, 11, 4, 2, 0) + TimeDelta::seconds(30);
    assert_eq!(reported, [first_look, first_look]);
}

#[test]
fn catch_up_once_runs_once_for_the_newest_fire_while_its_window_is_open() {
    let d = down_from_monday_noon(CatchUp::Once, berlin(2026, 11, 4, 2, 0));
    let caught_up: Vec<(DateTime<Utc>, DateTime<Utc>, bool)> = d
        .log
        .iter()
        .filter_map(|(_, decision)| match decision {
            Decision::Start {
                fire,
                window_closes,
                caught_up,
                ..
            } => Some((*fire, *window_closes, *caught_up)),
            _ => None,
        })
        .collect();
    assert_eq!(
        caught_up,
        [
            (berlin(2026, 11, 2, 1, 30), berlin(2026, 11, 2, 5, 0), false),
            (berlin(2026, 11, 4, 1, 30), berlin(2026, 11, 4, 5, 0), true),
            (berlin(2026, 11, 5, 1, 30), berlin(2026, 11, 5, 5, 0), false),
        ]
    );
    assert_eq!(
        d.missed(Berlin),
        [("Tue 11-03 01:30".to_string(), Missed::FoldedIntoCatchUp)]
    );
    // The caught-up run started at the restart, half an hour after its fire.
    assert_eq!(
        d.runs[1].started,
        berlin(2026, 11, 4, 2, 0) + TimeDelta::seconds(30)
    );
}

#[test]
fn catch_up_once_runs_nothing_when_the_window_has_closed_since() {
    let d = down_from_monday_noon(CatchUp::Once, berlin(2026, 11, 4, 12, 0));
    assert_eq!(
        d.starts(Berlin, WEEKDAY_TIME),
        ["Mon 11-02 01:30", "Thu 11-05 01:30"]
    );
    assert_eq!(
        d.missed(Berlin),
        [
            ("Tue 11-03 01:30".to_string(), Missed::WindowClosed),
            ("Wed 11-04 01:30".to_string(), Missed::WindowClosed),
        ]
    );
}

/// Counts of each kind of decision in one look.
fn tally(decisions: &[Decision]) -> (usize, Vec<(Missed, usize)>, Vec<Missed>) {
    let starts = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Start { .. }))
        .count();
    let mut missed: Vec<(Missed, usize)> = Vec::new();
    for d in decisions {
        if let Decision::Missed { why, .. } = d {
            match missed.iter_mut().find(|(w, _)| w == why) {
                Some((_, n)) => *n += 1,
                None => missed.push((*why, 1)),
            }
        }
    }
    let more = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::MissedMore { why, .. } => Some(*why),
            _ => None,
        })
        .collect();
    (starts, missed, more)
}

#[test]
fn a_year_down_with_an_every_minute_schedule_lists_the_newest_fires_only() {
    let all_day = "start = \"00:00\"\nend = \"23:59\"";
    let mut d = daemon("* * * * *", all_day, berlin(2026, 1, 5, 12, 0));
    d.down_until(berlin(2027, 1, 5, 12, 0));
    d.clock.advance(TimeDelta::seconds(30));
    let look = d.look();
    assert_eq!(look.len(), LISTED_FIRES + 1);
    // 12:00 and 11:59 are on time (11:59 is superseded by 12:00); the
    // older 98 were missed, and so was every fire before them.
    assert_eq!(
        tally(&look),
        (
            1,
            vec![(Missed::DaemonDown, 98), (Missed::Superseded, 1)],
            vec![Missed::DaemonDown]
        )
    );
    let Decision::MissedMore { after, before, .. } = &look[0] else {
        panic!("{:?}", look[0]);
    };
    assert_eq!(
        (*after, *before),
        (berlin(2026, 1, 5, 12, 0), berlin(2027, 1, 5, 10, 21))
    );
    // Once, the run at 12:00 is on time and makes up for all of it.
    let mut d = daemon("* * * * *", all_day, berlin(2026, 1, 5, 12, 0)).policy(CatchUp::Once);
    d.down_until(berlin(2027, 1, 5, 12, 0) + TimeDelta::seconds(30));
    assert_eq!(
        tally(&d.look()),
        (1, vec![(Missed::Superseded, 99)], vec![Missed::Superseded])
    );
}

#[test]
fn two_years_down_with_the_last_frozen_still_finds_the_newest_fires() {
    let window = "start = \"01:00\"\nend = \"05:00\"\nfreeze = [{ from = \"2027-01-01\", to = \"2028-01-05\" }]";
    for (policy, why) in [
        (CatchUp::Skip, Missed::DaemonDown),
        (CatchUp::Once, Missed::WindowClosed),
    ] {
        let mut d = daemon("* * * * *", window, berlin(2026, 1, 5, 12, 0)).policy(policy);
        d.down_until(berlin(2028, 1, 5, 12, 0));
        let look = d.look();
        assert_eq!(tally(&look), (0, vec![(why, LISTED_FIRES)], vec![why]));
        let fires: Vec<DateTime<Utc>> = look
            .iter()
            .filter_map(|d| match d {
                Decision::Missed { fire, .. } => Some(*fire),
                _ => None,
            })
            .collect();
        assert_eq!(fires.first(), Some(&berlin(2026, 12, 31, 3, 20)));
        assert_eq!(fires.last(), Some(&berlin(2026, 12, 31, 4, 59)));
    }
}

#[test]
fn a_run_past_its_window_drains_through_the_grace_period_then_is_cancelled() {
    let mut d = daemon("50 4 * * *", EVERY_NIGHT, berlin(2026, 11, 3, 4, 0));
    d.run_length = TimeDelta::minutes(30);
    d.run_until(berlin(2026, 11, 3, 6, 0));
    let [run] = d.runs.as_slice() else {
        panic!("one run: {:?}", d.runs);
    };
    assert_eq!(
        run.phases,
        [
            (berlin(2026, 11, 3, 4, 50), Phase::Open),
            (berlin(2026, 11, 3, 5, 0), Phase::Draining),
            (berlin(2026, 11, 3, 5, 5), Phase::Cancel),
        ]
    );
    assert_eq!(run.ended, Some(berlin(2026, 11, 3, 5, 5)));

    // One that finishes within the grace period ends on its own.
    let mut d = daemon("50 4 * * *", EVERY_NIGHT, berlin(2026, 11, 3, 4, 0));
    d.run_length = TimeDelta::minutes(12);
    d.run_until(berlin(2026, 11, 3, 6, 0));
    assert_eq!(
        d.runs[0].phases,
        [
            (berlin(2026, 11, 3, 4, 50), Phase::Open),
            (berlin(2026, 11, 3, 5, 0), Phase::Draining),
        ]
    );
    assert_eq!(d.runs[0].ended, Some(berlin(2026, 11, 3, 5, 2)));
}

#[test]
fn an_every_minute_schedule_starts_once_per_minute_even_with_ten_second_ticks() {
    let all_day = "start = \"00:00\"\nend = \"23:59\"";
    let start = berlin(2026, 11, 3, 9, 0) + TimeDelta::seconds(5);
    let mut d = daemon("* * * * *", all_day, start).tick(TimeDelta::seconds(10));
    d.run_until(start + TimeDelta::hours(3));
    let fires: Vec<DateTime<Utc>> = d.runs.iter().map(|r| r.fire).collect();
    let expected: Vec<DateTime<Utc>> = (1..=180)
        .map(|m| berlin(2026, 11, 3, 9, 0) + TimeDelta::minutes(m))
        .collect();
    assert_eq!(fires, expected);
    // Each starts at the first look after its minute: 5 s later.
    assert!(
        d.runs
            .iter()
            .all(|r| r.started - r.fire == TimeDelta::seconds(5))
    );
    assert_eq!(d.missed(Berlin), []);
}
