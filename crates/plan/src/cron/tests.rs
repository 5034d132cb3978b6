use chrono::NaiveDate;
use chrono_tz::America::New_York;
use chrono_tz::Europe::Berlin;
use proptest::prelude::*;

use super::*;

fn cron(text: &str) -> Cron {
    text.parse().unwrap_or_else(|err| panic!("`{text}`: {err}"))
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid UTC time")
}

fn next_utc<Tz: TimeZone>(c: &Cron, after: DateTime<Tz>) -> DateTime<Utc> {
    c.next_after(&after).expect("fires").with_timezone(&Utc)
}

#[test]
fn weeknights_in_berlin() {
    let c = cron("30 1 * * Tue-Fri");
    // Monday 2026-11-23 00:00 CET: the next fire is Tuesday 01:30 CET.
    let monday = Berlin
        .with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
        .single()
        .expect("time");
    assert_eq!(next_utc(&c, monday), utc(2026, 11, 24, 0, 30));
    // Friday 02:00: the next fire is the following Tuesday.
    let friday = Berlin
        .with_ymd_and_hms(2026, 11, 27, 2, 0, 0)
        .single()
        .expect("time");
    assert_eq!(next_utc(&c, friday), utc(2026, 12, 1, 0, 30));
}

#[test]
fn sunday_is_zero_or_seven() {
    let start = utc(2026, 11, 23, 0, 0); // a Monday
    let sunday = utc(2026, 11, 29, 4, 0);
    assert_eq!(next_utc(&cron("0 4 * * 0"), start), sunday);
    assert_eq!(next_utc(&cron("0 4 * * 7"), start), sunday);
    assert_eq!(next_utc(&cron("0 4 * * sun"), start), sunday);
    assert_eq!(
        next_utc(&cron("0 4 * * Fri-7"), start),
        utc(2026, 11, 27, 4, 0)
    );
}

#[test]
fn restricted_day_fields_are_ored() {
    // The 13th, or any Friday: 2026-11-13 is a Friday, so take December.
    let c = cron("0 0 13 * Fri");
    let start = utc(2026, 11, 30, 0, 0);
    assert_eq!(next_utc(&c, start), utc(2026, 12, 4, 0, 0)); // Friday
    assert_eq!(
        next_utc(&c, utc(2026, 12, 11, 0, 0)),
        utc(2026, 12, 13, 0, 0)
    ); // the 13th, a Sunday
}

#[test]
fn a_star_day_field_keeps_the_and_rule() {
    // Day-of-month starts with `*`, so only odd days that are Mondays fire.
    let c = cron("0 0 */2 * Mon");
    assert_eq!(
        next_utc(&c, utc(2026, 11, 23, 0, 0)),
        utc(2026, 12, 7, 0, 0)
    );
}

#[test]
fn macros_mean_what_crontab_says() {
    let start = utc(2026, 11, 23, 10, 17);
    assert_eq!(next_utc(&cron("@hourly"), start), utc(2026, 11, 23, 11, 0));
    assert_eq!(next_utc(&cron("@daily"), start), utc(2026, 11, 24, 0, 0));
    assert_eq!(next_utc(&cron("@weekly"), start), utc(2026, 11, 29, 0, 0));
    assert_eq!(next_utc(&cron("@monthly"), start), utc(2026, 12, 1, 0, 0));
    assert_eq!(next_utc(&cron("@yearly"), start), utc(2027, 1, 1, 0, 0));
}

#[test]
fn spring_forward_gap_fires_once_right_after_the_jump_in_berlin() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    let c = cron("30 2 * * *");
    let before = Berlin
        .with_ymd_and_hms(2026, 3, 29, 0, 0, 0)
        .single()
        .expect("time");
    let fire = c.next_after(&before).expect("fires");
    assert_eq!(fire.with_timezone(&Utc), utc(2026, 3, 29, 1, 0));
    assert_eq!(next_utc(&c, fire), utc(2026, 3, 30, 0, 30)); // 02:30 CEST
}

#[test]
fn every_quarter_hour_in_the_gap_is_one_fire() {
    let c = cron("*/15 2 * * *");
    let before = Berlin
        .with_ymd_and_hms(2026, 3, 29, 1, 50, 0)
        .single()
        .expect("time");
    let fire = c.next_after(&before).expect("fires");
    assert_eq!(fire.with_timezone(&Utc), utc(2026, 3, 29, 1, 0));
    assert_eq!(next_utc(&c, fire), utc(2026, 3, 30, 0, 0)); // next day 02:00 CEST
}

#[test]
fn fall_back_overlap_fires_once_in_berlin() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    let c = cron("30 2 * * *");
    let before = Berlin
        .with_ymd_and_hms(2026, 10, 25, 0, 0, 0)
        .single()
        .expect("time");
    let fire = c.next_after(&before).expect("fires");
    assert_eq!(fire.with_timezone(&Utc), utc(2026, 10, 25, 0, 30)); // 02:30 CEST
    assert_eq!(next_utc(&c, fire), utc(2026, 10, 26, 1, 30)); // 02:30 CET next day
}

#[test]
fn new_york_gap_and_overlap() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    let c = cron("30 2 * * *");
    let before = New_York
        .with_ymd_and_hms(2026, 3, 8, 0, 0, 0)
        .single()
        .expect("time");
    assert_eq!(next_utc(&c, before), utc(2026, 3, 8, 7, 0));
    // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    let c = cron("30 1 * * *");
    let before = New_York
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("time");
    let fire = c.next_after(&before).expect("fires");
    assert_eq!(fire.with_timezone(&Utc), utc(2026, 11, 1, 5, 30)); // 01:30 EDT
    assert_eq!(next_utc(&c, fire), utc(2026, 11, 2, 6, 30)); // 01:30 EST next day
}

#[test]
fn errors_say_where_and_what_to_write() {
    let err = |text: &str| text.parse::<Cron>().expect_err(text);
    let e = err("30 25 * * *");
    assert_eq!((e.start, e.len), (3, 2));
    assert_eq!(e.message, "25 is out of range for the hour field (0-23)");
    let e = err("0 1 * * Mon-Fry");
    assert_eq!(e.start, 8);
    assert!(
        e.message.contains("`Fry` is not a day of week"),
        "{}",
        e.message
    );
    assert!(err("0 1 * *").message.contains("has 4"));
    assert!(err("0 5-1 * * *").message.contains("runs backwards"));
    assert!(err("5/10 * * * *").message.contains("write `5-59/10`"));
    assert!(err("*/0 * * * *").message.contains("positive"));
    assert!(err("@reboot").message.contains("@hourly"));
}

/// A field as the property test generates it: its text, and the values it
/// obviously stands for.
#[derive(Debug, Clone)]
struct GenField {
    text: String,
    values: Vec<u32>,
}

fn gen_item(min: u32, max: u32) -> impl Strategy<Value = GenField> {
    let top = max;
    prop_oneof![
        Just(GenField {
            text: "*".into(),
            values: (min..=top).collect()
        }),
        (1..=top.max(2)).prop_map(move |s| GenField {
            text: format!("*/{s}"),
            values: (min..=top).step_by(s as usize).collect()
        }),
        (min..=top).prop_map(|v| GenField {
            text: v.to_string(),
            values: vec![v]
        }),
        (min..=top, min..=top, 1..4u32).prop_map(|(a, b, s)| {
            let (a, b) = (a.min(b), a.max(b));
            GenField {
                text: format!("{a}-{b}/{s}"),
                values: (a..=b).step_by(s as usize).collect(),
            }
        }),
    ]
}

fn gen_field(min: u32, max: u32) -> impl Strategy<Value = GenField> {
    prop::collection::vec(gen_item(min, max), 1..3).prop_map(|items| GenField {
        text: items
            .iter()
            .map(|i| i.text.clone())
            .collect::<Vec<_>>()
            .join(","),
        values: items.into_iter().flat_map(|i| i.values).collect(),
    })
}

/// crontab(5) by brute force over days, hours and minutes.
fn reference_next(fields: &[GenField; 5], after: NaiveDateTime) -> Option<NaiveDateTime> {
    let has = |f: &GenField, v: u32| f.values.contains(&v);
    let dow_has = |v: u32| fields[4].values.iter().any(|&d| d % 7 == v);
    let both = !fields[2].text.starts_with('*') && !fields[4].text.starts_with('*');
    let mut day = after.date();
    for _ in 0..(366 * 4) {
        let dom = has(&fields[2], day.day());
        let dow = dow_has(day.weekday().num_days_from_sunday());
        let day_ok = if both { dom || dow } else { dom && dow };
        if day_ok && has(&fields[3], day.month()) {
            for h in 0..24 {
                for m in 0..60 {
                    let t = day.and_hms_opt(h, m, 0)?;
                    if t > after && has(&fields[1], h) && has(&fields[0], m) {
                        return Some(t);
                    }
                }
            }
        }
        day = day.succ_opt()?;
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn agrees_with_the_reference_model(
        minute in gen_field(0, 59),
        hour in gen_field(0, 23),
        dom in gen_field(1, 31),
        month in gen_field(1, 12),
        dow in gen_field(0, 7),
        start_day in 0i64..3000,
        start_minute in 0i64..1440,
    ) {
        let fields = [minute, hour, dom, month, dow];
        let text = fields.iter().map(|f| f.text.clone()).collect::<Vec<_>>().join(" ");
        let c: Cron = text.parse().map_err(|e| TestCaseError::fail(format!("`{text}`: {e}")))?;
        let start = NaiveDate::from_ymd_opt(2024, 1, 1).expect("date").and_hms_opt(0, 0, 0).expect("time")
            + Duration::days(start_day) + Duration::minutes(start_minute);
        let expected = reference_next(&fields, start);
        prop_assume!(expected.is_some());
        prop_assert_eq!(c.next_naive(start), expected, "`{}` after {}", text, start);
    }

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,40}") {
        let _ = text.parse::<Cron>();
    }
}
