//! Property tests: for random schedules, windows, zones, starts and tick
//! lengths, every fire the plan predicts gets exactly one decision from the
//! daemon, and no start falls outside the window.

use chrono::Weekday;
use nightshift_plan::next::fires_in;
use nightshift_plan::window::{WindowRule, time_of_day};
use nightshift_scheduler::Schedule;
use proptest::prelude::*;

use super::*;

const ZONES: [Tz; 4] = [
    Berlin,
    Tz::UTC,
    Tz::America__New_York,
    // Half-hour daylight saving.
    Tz::Australia__Lord_Howe,
];

fn cron() -> impl Strategy<Value = String> {
    let minute = prop::sample::select(vec!["0", "30", "*/15", "5,35", "*"]);
    let hour = prop::sample::select(vec!["*", "*", "1-4", "22,23,0,1", "*/3", "0-11"]);
    let dow = prop::sample::select(vec!["*", "*", "Mon-Fri", "Sat,Sun"]);
    (minute, hour, dow).prop_map(|(m, h, d)| format!("{m} {h} * * {d}"))
}

fn window() -> impl Strategy<Value = WindowRule> {
    let days = prop_oneof![Just(vec![]), prop::collection::vec(any::<bool>(), 7)];
    let time = (0u32..24, prop::sample::select(vec![0u32, 30]));
    let zone = prop::sample::select(ZONES.to_vec());
    (days, time.clone(), time, zone)
        .prop_filter("a window that opens", |(_, start, end, _)| start != end)
        .prop_map(|(days, (sh, sm), (eh, em), timezone)| WindowRule {
            days: days
                .iter()
                .zip([
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ])
                .filter_map(|(on, day)| on.then_some(day))
                .collect(),
            monthly: None,
            start: time_of_day(&format!("{sh:02}:{sm:02}")).expect("time"),
            end: time_of_day(&format!("{eh:02}:{em:02}")).expect("time"),
            timezone,
            blackout: vec![],
            freeze: vec![],
        })
}

/// Starts near daylight-saving changes in each of the zones.
fn start() -> impl Strategy<Value = DateTime<Utc>> {
    let days = prop::sample::select(vec![
        utc(2026, 3, 6, 0, 0),
        utc(2026, 3, 27, 0, 0),
        utc(2026, 4, 3, 0, 0),
        utc(2026, 10, 3, 0, 0),
        utc(2026, 10, 23, 0, 0),
        utc(2026, 10, 30, 0, 0),
    ]);
    (days, 0i64..2 * 24 * 3600).prop_map(|(day, s)| day + TimeDelta::seconds(s))
}

/// Every fire `nightshift schedule next` predicts in (`from`, `through`].
fn predicted(entry: &Schedule, from: DateTime<Utc>, through: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut fires = Vec::new();
    let mut after = from;
    while let Some(fire) = fires_in(&entry.cron, entry.timezone, &entry.window, after, 1)
        .first()
        .map(|f| f.to_utc())
        .filter(|f| *f <= through)
    {
        fires.push(fire);
        after = fire;
    }
    fires
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A daemon that looks at least every `late_after` gives every fire
    /// the plan predicts exactly one decision: a start, or, when several
    /// came in one look or the window closed before the look, a miss
    /// that says so; never a start outside the window.
    #[test]
    fn every_predicted_fire_gets_exactly_one_decision(
        cron in cron(),
        window in window(),
        zone in prop::sample::select(ZONES.to_vec()),
        start in start(),
        tick in 60i64..=900,
    ) {
        let entry = Schedule {
            key: "k".into(),
            playbook: "p".into(),
            cron: cron.parse().expect("cron"),
            timezone: zone,
            window_name: "w".into(),
            window,
            enabled: true,
            catch_up: None,
        };
        let tick = TimeDelta::seconds(tick);
        let mut d = Daemon::new(vec![entry.clone()], start).tick(tick);
        d.late_after = tick;
        d.run_until(start + TimeDelta::days(3));
        let expected = predicted(&entry, start, d.last_looked);
        let mut decided = Vec::new();
        for (now, decision) in &d.log {
            let (fire, why) = match decision {
                Decision::Start { fire, .. } => (*fire, None),
                Decision::Missed { fire, why, .. } => (*fire, Some(*why)),
                Decision::MissedMore { .. } => panic!("nothing is late: {decision:?}"),
            };
            prop_assert!(fire <= *now && *now - fire <= tick, "{fire} decided at {now}");
            let closes = entry.window.next_opening(&fire).expect("an opening").close;
            match why {
                None => prop_assert!(*now < closes),
                Some(Missed::WindowClosed) => prop_assert!(closes <= *now),
                Some(Missed::Superseded) => {
                    let started_later = d.log.iter().any(|(at, later)| {
                        at == now && matches!(later, Decision::Start { fire: f, .. } if *f > fire)
                    });
                    prop_assert!(started_later, "{fire} superseded by nothing");
                }
                Some(other) => prop_assert!(false, "nothing is late, yet {other:?}"),
            }
            decided.push(fire);
        }
        prop_assert_eq!(decided, expected);
    }
}
