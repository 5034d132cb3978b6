//! Maintenance windows: when nightshift may touch a host.
//!
//! A window opens on some days (weekdays, or a month rule such as "second
//! Tuesday + 4 days") at a local start time and closes at a local end time,
//! the next day when the end is earlier than the start. Blackout dates and
//! freeze periods always win: no instant on such a local date is inside the
//! window.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;

/// A window ready to answer "is it open?", with every field parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRule {
    /// Days on which the window opens; empty with no month rule = every day.
    pub days: Vec<Weekday>,
    pub monthly: Option<MonthRule>,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub timezone: Tz,
    pub blackout: Vec<NaiveDate>,
    pub freeze: Vec<(NaiveDate, NaiveDate)>,
}

/// One opening of a window, in its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub open: DateTime<Tz>,
    pub close: DateTime<Tz>,
}

/// How far ahead a window is searched before it is declared never to open.
pub const HORIZON_DAYS: i64 = 800;

impl WindowRule {
    /// Whether the local date is blacked out or frozen.
    pub fn is_blocked(&self, date: NaiveDate) -> bool {
        self.blackout.contains(&date)
            || self
                .freeze
                .iter()
                .any(|(from, to)| (*from..=*to).contains(&date))
    }

    fn opens_on(&self, date: NaiveDate) -> bool {
        match &self.monthly {
            Some(rule) => rule.matches(date),
            None => self.days.is_empty() || self.days.contains(&date.weekday()),
        }
    }

    /// The opening that starts on a local date, clipped at the first blocked
    /// local midnight; `None` when the window does not open that day.
    fn opening_on(&self, date: NaiveDate) -> Option<Opening> {
        if !self.opens_on(date) || self.is_blocked(date) {
            return None;
        }
        let end_date = if self.end <= self.start {
            date.succ_opt()?
        } else {
            date
        };
        let open = local(self.timezone, date.and_time(self.start))?;
        let close = if end_date != date && self.is_blocked(end_date) {
            local(self.timezone, end_date.and_time(NaiveTime::MIN))?
        } else {
            local(self.timezone, end_date.and_time(self.end))?
        };
        (close > open).then_some(Opening { open, close })
    }

    /// The opening in progress at `at`, or the next one after it.
    pub fn next_opening<Z: TimeZone>(&self, at: &DateTime<Z>) -> Option<Opening> {
        let at = at.with_timezone(&self.timezone);
        let first = at.date_naive().pred_opt()?;
        (0..HORIZON_DAYS)
            .filter_map(|d| first.checked_add_signed(Duration::days(d)))
            .filter_map(|date| self.opening_on(date))
            .find(|o| o.close > at)
    }

    /// Whether the window is open at `at`.
    pub fn is_open<Z: TimeZone>(&self, at: &DateTime<Z>) -> bool {
        let at = at.with_timezone(&self.timezone);
        self.next_opening(&at).is_some_and(|o| o.open <= at)
    }
}

/// A local wall-clock time placed in a zone: a time skipped by daylight
/// saving moves to just after the jump; a repeated one takes its first
/// occurrence.
fn local(tz: Tz, at: chrono::NaiveDateTime) -> Option<DateTime<Tz>> {
    (0..=180).find_map(|m| {
        tz.from_local_datetime(&at.checked_add_signed(Duration::minutes(m))?)
            .earliest()
    })
}

/// "second Tuesday", "last Friday + 2 days", "Saturday after second Tuesday".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRule {
    /// 1-4, or 5 for "last".
    pub nth: u8,
    pub weekday: Weekday,
    pub offset_days: i64,
}

impl MonthRule {
    /// The day this rule names in a month (the offset may carry it into the
    /// next month, as "the Saturday after Patch Tuesday" can).
    pub fn day_in(&self, year: i32, month: u32) -> Option<NaiveDate> {
        let base = if self.nth == 5 {
            let next = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            let last = next.pred_opt()?;
            let back = (7 + last.weekday().num_days_from_monday()
                - self.weekday.num_days_from_monday())
                % 7;
            last.checked_sub_signed(Duration::days(back.into()))?
        } else {
            NaiveDate::from_weekday_of_month_opt(year, month, self.weekday, self.nth)?
        };
        base.checked_add_signed(Duration::days(self.offset_days))
    }

    /// Whether `date` is this rule's day in its own month or, through an
    /// offset, in the month before or after.
    pub fn matches(&self, date: NaiveDate) -> bool {
        let month = chrono::Months::new(1);
        [
            date.checked_sub_months(month),
            Some(date),
            date.checked_add_months(month),
        ]
        .into_iter()
        .flatten()
        .any(|m| self.day_in(m.year(), m.month()) == Some(date))
    }
}

const ORDINALS: [&str; 5] = ["first", "second", "third", "fourth", "last"];

impl FromStr for MonthRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let example = "write it like \"second Tuesday\", \"second Tuesday + 4 days\" or \"Saturday after second Tuesday\"";
        let words: Vec<String> = text
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let nth_weekday = |ordinal: &str, day: &str| -> Result<(u8, Weekday), String> {
            let nth = ORDINALS.iter().position(|o| *o == ordinal).ok_or_else(|| {
                format!(
                    "`{ordinal}` is not an ordinal (first, second, third, fourth, last); {example}"
                )
            })?;
            Ok((nth as u8 + 1, weekday(day)?))
        };
        match words.as_slice() {
            [ordinal, day] => {
                let (nth, weekday) = nth_weekday(ordinal, day)?;
                Ok(Self {
                    nth,
                    weekday,
                    offset_days: 0,
                })
            }
            [ordinal, day, sign @ ("+" | "-"), n, "day" | "days"] => {
                let (nth, weekday) = nth_weekday(ordinal, day)?;
                let n: i64 = match n.parse::<u8>() {
                    Ok(days) if days <= 27 => days.into(),
                    Ok(_) => {
                        return Err(format!(
                            "an offset of {n} days is more than a month; {example}"
                        ));
                    }
                    Err(_) => {
                        return Err(format!(
                            "`{n}` is not a number of days from 0 to 27; {example}"
                        ));
                    }
                };
                Ok(Self {
                    nth,
                    weekday,
                    offset_days: if *sign == "-" { -n } else { n },
                })
            }
            [target, "after", ordinal, day] => {
                let (nth, weekday) = nth_weekday(ordinal, day)?;
                let target = self::weekday(target)?;
                let ahead =
                    (7 + target.num_days_from_monday() - weekday.num_days_from_monday()) % 7;
                let offset_days = if ahead == 0 { 7 } else { ahead.into() };
                Ok(Self {
                    nth,
                    weekday,
                    offset_days,
                })
            }
            _ => Err(format!("`{text}` is not a month rule; {example}")),
        }
    }
}

impl fmt::Display for MonthRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            ORDINALS[usize::from(self.nth - 1)],
            self.weekday
        )?;
        match self.offset_days {
            0 => Ok(()),
            n if n > 0 => write!(f, " + {n} days"),
            n => write!(f, " - {} days", -n),
        }
    }
}

/// A weekday by its English name or three-letter abbreviation.
pub fn weekday(text: &str) -> Result<Weekday, String> {
    text.parse::<Weekday>().map_err(|_| {
        format!("`{text}` is not a day of the week (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    })
}

/// "HH:MM" on a 24-hour clock.
pub fn time_of_day(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
        format!(
            "`{text}` is not a time of day; write it as HH:MM on a 24-hour clock, like \"01:30\""
        )
    })
}

/// "YYYY-MM-DD".
pub fn date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date; write it as YYYY-MM-DD, like \"2026-12-24\""))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use chrono_tz::Europe::Berlin;

    use super::*;

    fn rule(days: &[Weekday], start: &str, end: &str) -> WindowRule {
        WindowRule {
            days: days.to_vec(),
            monthly: None,
            start: time_of_day(start).expect("time"),
            end: time_of_day(end).expect("time"),
            timezone: Berlin,
            blackout: vec![],
            freeze: vec![],
        }
    }

    fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Tz> {
        Berlin
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_opens() {
        let w = rule(&[Weekday::Fri], "22:00", "04:00");
        assert!(w.is_open(&berlin(2026, 11, 27, 23, 0))); // Friday night
        assert!(w.is_open(&berlin(2026, 11, 28, 3, 59))); // Saturday early
        assert!(!w.is_open(&berlin(2026, 11, 28, 4, 0)));
        assert!(!w.is_open(&berlin(2026, 11, 27, 3, 0))); // Thursday's night is not open
    }

    #[test]
    fn blackout_dates_win() {
        let mut w = rule(&[], "01:00", "05:00");
        w.blackout = vec![date("2026-12-24").expect("date")];
        assert!(!w.is_open(&berlin(2026, 12, 24, 2, 0)));
        assert!(w.is_open(&berlin(2026, 12, 25, 2, 0)));
        let next = w.next_opening(&berlin(2026, 12, 23, 6, 0)).expect("opens");
        assert_eq!(next.open, berlin(2026, 12, 25, 1, 0));
    }

    #[test]
    fn freeze_periods_win_and_clip_a_night_that_runs_into_them() {
        let mut w = rule(&[], "22:00", "04:00");
        w.freeze = vec![(
            date("2026-12-15").expect("d"),
            date("2027-01-05").expect("d"),
        )];
        let o = w.next_opening(&berlin(2026, 12, 14, 12, 0)).expect("opens");
        assert_eq!(
            (o.open, o.close),
            (berlin(2026, 12, 14, 22, 0), berlin(2026, 12, 15, 0, 0))
        );
        let o = w.next_opening(&berlin(2026, 12, 15, 0, 0)).expect("opens");
        assert_eq!(o.open, berlin(2027, 1, 6, 22, 0));
    }

    #[test]
    fn patch_tuesday_and_the_saturday_after() {
        let patch: MonthRule = "second Tuesday".parse().expect("rule");
        assert_eq!(patch.day_in(2026, 11), Some(date("2026-11-10").expect("d")));
        let after: MonthRule = "Saturday after second Tuesday".parse().expect("rule");
        assert_eq!(after, "second Tuesday + 4 days".parse().expect("rule"));
        assert_eq!(after.day_in(2026, 12), Some(date("2026-12-12").expect("d")));
        let last: MonthRule = "last Friday".parse().expect("rule");
        assert_eq!(last.day_in(2026, 11), Some(date("2026-11-27").expect("d")));
    }

    #[test]
    fn a_monthly_window_opens_once_a_month() {
        let mut w = rule(&[], "02:00", "06:00");
        w.monthly = Some("second Tuesday + 4 days".parse().expect("rule"));
        let o = w.next_opening(&berlin(2026, 11, 15, 0, 0)).expect("opens");
        assert_eq!(o.open, berlin(2026, 12, 12, 2, 0));
        assert!(!w.is_open(&berlin(2026, 12, 13, 3, 0)));
    }

    #[test]
    fn a_start_in_the_spring_gap_opens_after_the_jump() {
        let w = rule(&[], "02:30", "04:00");
        let o = w.next_opening(&berlin(2026, 3, 29, 0, 0)).expect("opens");
        assert_eq!(
            o.open.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0)
                .single()
                .expect("t")
        );
    }

    #[test]
    fn a_negative_offset_reaches_into_the_month_before() {
        let rule: MonthRule = "first Monday - 3 days".parse().expect("rule");
        // The first Monday of February 2026 is the 2nd; three days before is
        // Friday 30 January.
        assert!(rule.matches(date("2026-01-30").expect("d")));
        assert!(!rule.matches(date("2026-02-02").expect("d")));
    }

    #[test]
    fn huge_offsets_are_refused_not_panicked_on() {
        for text in [
            "second Tuesday + -999999999999999 days",
            "second Tuesday - -9223372036854775808 days",
            "last Friday + 28 days",
        ] {
            assert!(text.parse::<MonthRule>().is_err(), "{text}");
        }
    }

    #[test]
    fn month_rules_refuse_nonsense_with_an_example() {
        let err = "fifth Tuesday"
            .parse::<MonthRule>()
            .expect_err("bad ordinal");
        assert!(err.contains("second Tuesday"), "{err}");
        assert!("second Tuesday + x days".parse::<MonthRule>().is_err());
        assert!("second Tuesdee".parse::<MonthRule>().is_err());
    }
}
