//! The schedules of a plan, resolved into what the daemon keeps.

use std::collections::BTreeSet;

use chrono_tz::Tz;
use nightshift_plan::cron::Cron;
use nightshift_plan::window::WindowRule;
use nightshift_plan::{CatchUp, Plan, Schedule};

/// One enabled, valid schedule, resolved.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable identity across restarts and reloads:
    /// `playbook|cron|timezone|window`, each as written. Editing any of them
    /// makes a new schedule, with no history of fires.
    pub key: String,
    pub playbook: String,
    pub cron: Cron,
    /// The zone the cron expression is read in.
    pub timezone: Tz,
    pub window_name: String,
    /// The window in its own zone (the schedule's when it names none).
    pub window: WindowRule,
    /// The schedule's own catch-up policy; `None` means the config's
    /// `daemon.catch_up`. Not part of the key: changing it keeps the
    /// schedule's history.
    pub catch_up: Option<CatchUp>,
}

/// The enabled schedules of `plan` that can run. Disabled ones are left
/// out, and so are the ones whose cron expression, time zone or window does
/// not resolve: `nightshift check` reports those, with positions. A schedule
/// written twice (same key) is kept once. Whether the playbook exists is
/// not looked at here: a run of a missing playbook fails where it is
/// recorded, rather than the schedule going quiet.
pub fn entries(plan: &Plan) -> Vec<Entry> {
    let mut keys = BTreeSet::new();
    plan.schedules
        .iter()
        .flat_map(|file| &file.value.schedule)
        .filter(|s| s.enabled)
        .filter_map(|s| entry(plan, s))
        .filter(|e| keys.insert(e.key.clone()))
        .collect()
}

fn entry(plan: &Plan, s: &Schedule) -> Option<Entry> {
    let cron: Cron = s.cron.get_ref().parse().ok()?;
    let timezone: Tz = s.timezone.get_ref().parse().ok()?;
    let window = plan.window_rule(s.window.get_ref(), timezone)?;
    let key = [&s.playbook, &s.cron, &s.timezone, &s.window]
        .map(|field| field.get_ref().as_str())
        .join("|");
    Some(Entry {
        key,
        playbook: s.playbook.get_ref().clone(),
        cron,
        timezone,
        window_name: s.window.get_ref().clone(),
        window,
        catch_up: s.catch_up,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use nightshift_plan::{Loaded, ScheduleFile, Source};

    use super::*;

    fn plan(files: &[&str]) -> Plan {
        let schedules = files
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let source = Source::new(format!("schedules/{i}.toml"), *text);
                let value: ScheduleFile = source.parse().expect("schedules parse");
                Loaded { source, value }
            })
            .collect();
        Plan {
            schedules,
            ..Plan::default()
        }
    }

    const NIGHTS: &str = r#"
[windows.nights]
days = ["Mon", "Tue"]
start = "01:00"
end = "05:00"
blackout = ["2026-12-24"]
freeze = [{ from = "2026-12-28", to = "2027-01-03" }]
"#;

    fn keys(plan: &Plan) -> Vec<String> {
        entries(plan).into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn a_schedule_resolves_with_its_window_in_the_schedule_zone() {
        let text = format!(
            "{NIGHTS}\n[[schedule]]\nplaybook = \"web-patch\"\ncron = \"30 1 * * Tue\"\ntimezone = \"Europe/Berlin\"\nwindow = \"nights\"\ncatch_up = \"once\"\n"
        );
        let found = entries(&plan(&[&text]));
        let [e] = found.as_slice() else {
            panic!("one entry, got {found:?}")
        };
        assert_eq!(e.key, "web-patch|30 1 * * Tue|Europe/Berlin|nights");
        assert_eq!(
            (e.playbook.as_str(), e.window_name.as_str()),
            ("web-patch", "nights")
        );
        assert_eq!(e.timezone, Tz::Europe__Berlin);
        assert_eq!(e.window.timezone, Tz::Europe__Berlin);
        assert_eq!(e.window.days, [Weekday::Mon, Weekday::Tue]);
        assert_eq!(e.window.blackout.len(), 1);
        assert_eq!(e.window.freeze.len(), 1);
        assert_eq!(e.cron.source(), "30 1 * * Tue");
        assert_eq!(e.catch_up, Some(CatchUp::Once));
    }

    #[test]
    fn disabled_invalid_and_duplicate_schedules_are_left_out() {
        let schedule = |playbook: &str, cron: &str, tz: &str, window: &str, enabled: bool| {
            format!(
                "[[schedule]]\nplaybook = \"{playbook}\"\ncron = \"{cron}\"\ntimezone = \"{tz}\"\nwindow = \"{window}\"\nenabled = {enabled}\n"
            )
        };
        let text = [
            NIGHTS.to_string(),
            "[windows.broken]\nstart = \"25:00\"\nend = \"05:00\"\n".into(),
            "[windows.both]\ndays = [\"Mon\"]\nmonthly = \"second Tuesday\"\nstart = \"01:00\"\nend = \"05:00\"\n".into(),
            "[windows.empty]\nstart = \"01:00\"\nend = \"01:00\"\n".into(),
            schedule("a", "0 2 * * *", "UTC", "nights", true),
            schedule("off", "0 2 * * *", "UTC", "nights", false),
            schedule("bad-cron", "0 25 * * *", "UTC", "nights", true),
            schedule("bad-tz", "0 2 * * *", "Europe/Berlyn", "nights", true),
            schedule("no-window", "0 2 * * *", "UTC", "nightz", true),
            schedule("bad-window", "0 2 * * *", "UTC", "broken", true),
            schedule("days-and-month", "0 2 * * *", "UTC", "both", true),
            schedule("never-open", "0 2 * * *", "UTC", "empty", true),
            schedule("a", "0 2 * * *", "UTC", "nights", true),
        ]
        .concat();
        assert_eq!(keys(&plan(&[&text])), ["a|0 2 * * *|UTC|nights"]);
    }

    #[test]
    fn windows_are_shared_across_files_and_the_first_definition_wins() {
        let first = "[windows.w]\nstart = \"01:00\"\nend = \"02:00\"\ntimezone = \"UTC\"\n";
        let second = "[windows.w]\nstart = \"03:00\"\nend = \"04:00\"\n\n[[schedule]]\nplaybook = \"p\"\ncron = \"@hourly\"\ntimezone = \"Asia/Tokyo\"\nwindow = \"w\"\n";
        let found = entries(&plan(&[first, second]));
        let [e] = found.as_slice() else {
            panic!("one entry, got {found:?}")
        };
        assert_eq!(
            e.window.start,
            nightshift_plan::window::time_of_day("01:00").expect("t")
        );
        assert_eq!(e.window.timezone, Tz::UTC);
        assert_eq!(e.timezone, Tz::Asia__Tokyo);
    }

    #[test]
    fn a_month_rule_resolves() {
        let text = "[windows.patch]\nmonthly = \"Saturday after second Tuesday\"\nstart = \"01:00\"\nend = \"07:00\"\n\n[[schedule]]\nplaybook = \"p\"\ncron = \"0 2 * * Sat\"\ntimezone = \"UTC\"\nwindow = \"patch\"\n";
        let found = entries(&plan(&[text]));
        let monthly = found.first().and_then(|e| e.window.monthly);
        assert_eq!(
            monthly,
            Some("second Tuesday + 4 days".parse().expect("rule"))
        );
    }
}
