//! The times people type: `--since`, `--as-of`, `--from`, and the web
//! console's fields after them.
//!
//! One grammar for every command: RFC 3339 (`2026-11-20T03:00:00Z`, or
//! with an offset), a date (`2026-11-20`), a local date-time
//! (`2026-11-20T03:00`, `2026-11-20 03:00`, with or without seconds),
//! `now`, `today`, `yesterday`, and ages (`30m`, `12h`, `7d`, `2w`: that
//! long before now). Local means the machine's time zone (`TZ` when set).
//!
//! A [`Moment`] is read once and resolved against a `now` given to it, so
//! tests need no wall clock. A date names a whole day and the other forms an
//! instant; which end of the day a command means is its own choice, made
//! with [`Moment::start`] or [`Moment::end`] ([`Moment::resolve_in`] and an
//! [`Edge`] for another zone).

use std::str::FromStr;

use chrono::{DateTime, Datelike as _, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use chrono::{TimeZone, Utc};

/// How a local date-time may be written.
const LOCAL_FORMS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
];

/// The years a moment may fall in: what the catalog's text stamps hold and
/// sort by.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// The longest age that can land in [`YEARS`] from any `now`.
const LONGEST_AGE: TimeDelta = TimeDelta::days(366 * 10_000);

/// The end of a day is its last millisecond, as finely as the catalog
/// records.
const FINEST: TimeDelta = TimeDelta::milliseconds(1);

/// Why a typed time was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MomentError {
    #[error(
        "not a time: write RFC 3339 (2026-11-20T03:00:00Z, 2026-11-20T04:00:00+01:00), \
         a date (2026-11-20), a local time (2026-11-20T03:00, 2026-11-20 03:00:30), \
         now, today, yesterday, or an age (30m, 12h, 7d, 2w)"
    )]
    NotATime,
    #[error("no such local time: the clocks skip it for daylight saving")]
    DaylightGap,
    #[error("out of range: a time in the years 1 to 9999, please")]
    OutOfRange,
}

/// A time as typed, not yet resolved against `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    form: Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Instant(Instant),
    Day(Day),
}

/// The forms that name an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instant {
    Now,
    /// That long before now.
    Ago(TimeDelta),
    /// RFC 3339: the same instant in every zone.
    Utc(DateTime<Utc>),
    /// A wall-clock time in the local zone; when the clocks go back and it
    /// comes twice, the first time.
    Local(NaiveDateTime),
}

/// The forms that name a whole local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Day {
    Date(NaiveDate),
    /// The day this many days before now's: `today` 0, `yesterday` 1.
    Back(u64),
}

impl Moment {
    /// Reads `text`, local times in `zone`. Everything that does not depend
    /// on `now` is checked here: a local time in a daylight-saving gap, a
    /// year out of range.
    pub fn parse_in<Z: TimeZone>(text: &str, zone: &Z) -> Result<Self, MomentError> {
        let moment = Self {
            form: Form::read(text.trim())?,
        };
        if moment.form.is_fixed() {
            for edge in [Edge::Start, Edge::End] {
                moment.resolve_in(edge, DateTime::UNIX_EPOCH, zone)?;
            }
        }
        Ok(moment)
    }

    /// The first instant named, local times in the machine's zone: a day's
    /// [`Edge::Start`], otherwise the instant itself. `--since` and `--from`
    /// read a date this way.
    pub fn start(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, MomentError> {
        self.resolve_in(Edge::Start, now, &Local)
    }

    /// The last instant named, local times in the machine's zone: a day's
    /// [`Edge::End`], otherwise the instant itself. `--as-of` reads a date
    /// this way.
    pub fn end(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, MomentError> {
        self.resolve_in(Edge::End, now, &Local)
    }

    /// The instant named at `edge` when it is a day, local times read in
    /// `zone`.
    pub fn resolve_in<Z: TimeZone>(
        &self,
        edge: Edge,
        now: DateTime<Utc>,
        zone: &Z,
    ) -> Result<DateTime<Utc>, MomentError> {
        match self.form {
            Form::Instant(instant) => instant.resolve(now, zone),
            Form::Day(day) => in_range(day.date(now, zone).and_then(|d| edge.of(d, zone))),
        }
    }
}

/// Which end of a day a command means; an instant is both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Its first instant: 00:00, or when the clocks skip midnight, the
    /// moment they land.
    Start,
    /// Its last millisecond, as finely as the catalog records.
    End,
}

impl Edge {
    fn of<Z: TimeZone>(self, day: NaiveDate, zone: &Z) -> Option<DateTime<Utc>> {
        match self {
            Self::Start => day_start(day, zone),
            Self::End => day_start(day.succ_opt()?, zone).map(|t| t - FINEST),
        }
    }
}

impl FromStr for Moment {
    type Err = MomentError;

    /// Reads `text` with local times in the machine's zone.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse_in(text, &Local)
    }
}

impl Form {
    fn read(text: &str) -> Result<Self, MomentError> {
        match text.to_ascii_lowercase().as_str() {
            "now" => return Ok(Self::Instant(Instant::Now)),
            "today" => return Ok(Self::Day(Day::Back(0))),
            "yesterday" => return Ok(Self::Day(Day::Back(1))),
            _ => {}
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Self::Instant(Instant::Utc(t.to_utc())));
        }
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Self::Day(Day::Date(day)));
        }
        if let Some(t) = LOCAL_FORMS
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        {
            return Ok(Self::Instant(Instant::Local(t)));
        }
        let age: nightshift_plan::Duration = text.parse().map_err(|_| MomentError::NotATime)?;
        TimeDelta::from_std(age.0)
            .ok()
            .filter(|age| *age <= LONGEST_AGE)
            .map(|age| Self::Instant(Instant::Ago(age)))
            .ok_or(MomentError::OutOfRange)
    }

    /// Whether it names the same time whatever `now` is.
    fn is_fixed(self) -> bool {
        matches!(
            self,
            Self::Instant(Instant::Utc(_) | Instant::Local(_)) | Self::Day(Day::Date(_))
        )
    }
}

impl Instant {
    fn resolve<Z: TimeZone>(
        self,
        now: DateTime<Utc>,
        zone: &Z,
    ) -> Result<DateTime<Utc>, MomentError> {
        match self {
            Self::Now => in_range(Some(now)),
            Self::Ago(age) => in_range(now.checked_sub_signed(age)),
            Self::Utc(t) => in_range(Some(t)),
            Self::Local(t) => {
                let at = zone.from_local_datetime(&t).earliest();
                in_range(Some(at.ok_or(MomentError::DaylightGap)?.to_utc()))
            }
        }
    }
}

impl Day {
    /// The local date named; `None` before the first date there is.
    fn date<Z: TimeZone>(self, now: DateTime<Utc>, zone: &Z) -> Option<NaiveDate> {
        match self {
            Self::Date(day) => Some(day),
            Self::Back(days) => now
                .with_timezone(zone)
                .date_naive()
                .checked_sub_days(chrono::Days::new(days)),
        }
    }
}

/// The first instant of `day` in `zone`: its midnight, or the first minute
/// after it that exists when the clocks skip midnight.
fn day_start<Z: TimeZone>(day: NaiveDate, zone: &Z) -> Option<DateTime<Utc>> {
    let midnight = day.and_time(NaiveTime::MIN);
    (0..=2 * 24 * 60)
        .filter_map(|minutes| midnight.checked_add_signed(TimeDelta::minutes(minutes)))
        .find_map(|t| zone.from_local_datetime(&t).earliest())
        .map(|t| t.to_utc())
}

/// `at`, when it falls in [`YEARS`].
fn in_range(at: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, MomentError> {
    at.filter(|t| YEARS.contains(&t.year()))
        .ok_or(MomentError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, SecondsFormat};
    use chrono_tz::America::Santiago;
    use chrono_tz::Europe::Berlin;
    use proptest::prelude::*;

    use super::*;

    /// A Friday, just after midnight in Berlin.
    const NOW: &str = "2026-11-20T23:30:00Z";

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect(text).to_utc()
    }

    /// `text`'s start and end read in Berlin at [`NOW`].
    fn in_berlin(text: &str) -> (DateTime<Utc>, DateTime<Utc>) {
        let moment = Moment::parse_in(text, &Berlin).expect(text);
        let now = at(NOW);
        let start = moment
            .resolve_in(Edge::Start, now, &Berlin)
            .expect("a start");
        (
            start,
            moment.resolve_in(Edge::End, now, &Berlin).expect("an end"),
        )
    }

    /// Asserts that `text`, read in Berlin at [`NOW`], runs from `start`
    /// to `end`.
    fn assert_spans(text: &str, start: &str, end: &str) {
        assert_eq!(in_berlin(text), (at(start), at(end)), "{text}");
    }

    fn refusal(text: &str) -> MomentError {
        Moment::parse_in(text, &Berlin).expect_err(text)
    }

    #[test]
    fn rfc3339_is_that_instant_in_every_zone() {
        for text in [
            "2026-11-20T03:00:00Z",
            "2026-11-20T04:00:00+01:00",
            "2026-11-19T22:00:00-05:00",
        ] {
            let instant = at("2026-11-20T03:00:00Z");
            assert_eq!(in_berlin(text), (instant, instant), "{text}");
        }
        let fine = in_berlin("2026-11-20T03:00:00.123456Z").0;
        assert_eq!(fine, at("2026-11-20T03:00:00.123456Z"));
    }

    #[test]
    fn a_date_is_a_local_day_from_its_midnight_to_its_last_millisecond() {
        assert_spans(
            "2026-11-20",
            "2026-11-19T23:00:00Z",
            "2026-11-20T22:59:59.999Z",
        );
        // The day the clocks go forward is 23 hours long.
        assert_spans(
            "2026-03-29",
            "2026-03-28T23:00:00Z",
            "2026-03-29T21:59:59.999Z",
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_when_the_clocks_land() {
        // Chile moves from 00:00 to 01:00 on 6 September 2026.
        let day = Moment::parse_in("2026-09-06", &Santiago).expect("a date");
        let now = at(NOW);
        assert_eq!(
            day.resolve_in(Edge::Start, now, &Santiago),
            Ok(at("2026-09-06T04:00:00Z"))
        );
        let eve = Moment::parse_in("2026-09-05", &Santiago).expect("a date");
        assert_eq!(
            eve.resolve_in(Edge::End, now, &Santiago),
            Ok(at("2026-09-06T03:59:59.999Z"))
        );
    }

    #[test]
    fn a_local_time_is_read_in_the_zone_with_or_without_seconds() {
        let three = at("2026-11-20T02:00:00Z");
        for text in [
            "2026-11-20T03:00",
            "2026-11-20 03:00",
            "2026-11-20T03:00:00",
        ] {
            assert_eq!(in_berlin(text), (three, three), "{text}");
        }
        assert_eq!(
            in_berlin("2026-11-20 03:00:30").0,
            at("2026-11-20T02:00:30Z")
        );
    }

    #[test]
    fn a_local_time_that_comes_twice_is_the_first() {
        // 02:30 on 25 October 2026 in Berlin: once in summer time, then again.
        assert_eq!(in_berlin("2026-10-25T02:30").0, at("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn a_local_time_the_clocks_skip_is_refused() {
        assert_eq!(refusal("2026-03-29T02:30"), MomentError::DaylightGap);
        assert_eq!(refusal("2026-03-29 02:00:00"), MomentError::DaylightGap);
        assert!(Moment::parse_in("2026-03-29T02:30", &Utc).is_ok());
        assert!(
            refusal("2026-03-29T02:30")
                .to_string()
                .contains("daylight saving")
        );
    }

    #[test]
    fn now_today_and_yesterday_follow_the_now_given_in_the_local_zone() {
        // At NOW it is already Saturday the 21st in Berlin.
        assert_eq!(in_berlin("now"), (at(NOW), at(NOW)));
        assert_eq!(in_berlin("Now").0, at(NOW));
        assert_spans("today", "2026-11-20T23:00:00Z", "2026-11-21T22:59:59.999Z");
        assert_spans(
            "yesterday",
            "2026-11-19T23:00:00Z",
            "2026-11-20T22:59:59.999Z",
        );
        let moment: Moment = "today".parse().expect("today");
        assert_eq!(
            moment.resolve_in(Edge::Start, at(NOW), &Utc),
            Ok(at("2026-11-20T00:00:00Z"))
        );
    }

    #[test]
    fn an_age_is_that_long_before_now() {
        let now = at(NOW);
        for (text, age) in [
            ("30m", TimeDelta::minutes(30)),
            ("12h", TimeDelta::hours(12)),
            ("7d", TimeDelta::days(7)),
            ("2w", TimeDelta::weeks(2)),
            ("1h30m", TimeDelta::minutes(90)),
        ] {
            assert_eq!(in_berlin(text), (now - age, now - age), "{text}");
        }
    }

    #[test]
    fn a_leap_day_is_a_date_only_in_leap_years() {
        assert_eq!(in_berlin("2028-02-29").0, at("2028-02-28T23:00:00Z"));
        assert_eq!(in_berlin("2028-02-29T12:00").0, at("2028-02-29T11:00:00Z"));
        assert_eq!(
            in_berlin("2028-02-29T12:00:00Z").0,
            at("2028-02-29T12:00:00Z")
        );
        for text in ["2026-02-29", "2026-02-29T12:00", "2026-02-29T12:00:00Z"] {
            assert_eq!(refusal(text), MomentError::NotATime, "{text}");
        }
    }

    #[test]
    fn times_outside_the_years_1_to_9999_are_refused() {
        for text in [
            "0000-12-31T23:59:59Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01",
            "1000000w",
        ] {
            assert_eq!(refusal(text), MomentError::OutOfRange, "{text}");
        }
        // The last day ends in year 10000 west of Greenwich.
        assert_eq!(
            Moment::parse_in("9999-12-31", &Santiago),
            Err(MomentError::OutOfRange)
        );
        let utc = |text: &str| Moment::parse_in(text, &Utc).expect(text);
        assert_eq!(
            utc("0001-01-01").resolve_in(Edge::Start, at(NOW), &Utc),
            Ok(at("0001-01-01T00:00:00Z"))
        );
        assert!(
            utc("9999-12-31")
                .resolve_in(Edge::End, at(NOW), &Utc)
                .is_ok()
        );
        // An age runs out of range only against a `now` near the start.
        let early = at("0001-01-02T00:00:00Z");
        assert_eq!(
            utc("2d").resolve_in(Edge::Start, early, &Utc),
            Err(MomentError::OutOfRange)
        );
        assert_eq!(
            utc("yesterday").resolve_in(Edge::Start, early, &Utc),
            Ok(at("0001-01-01T00:00:00Z"))
        );
        assert_eq!(
            utc("today").resolve_in(Edge::End, at("9999-12-31T12:00:00Z"), &Utc),
            Ok(at("9999-12-31T23:59:59.999Z"))
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_to_write() {
        for text in [
            "",
            "last tuesday",
            "2026-13-01",
            "2026-11-20T25:00",
            "20261120",
            "7",
            "0d",
            "tomorrow",
            "2026-11-20T03",
            "10000-01-01",
        ] {
            assert_eq!(refusal(text), MomentError::NotATime, "{text:?}");
        }
        let message = MomentError::NotATime.to_string();
        for form in [
            "RFC 3339",
            "2026-11-20",
            "2026-11-20T03:00",
            "yesterday",
            "7d",
        ] {
            assert!(message.contains(form), "{message}");
        }
    }

    /// Instants a moment may be: years 1 to 9999, to the nanosecond.
    fn in_range_instant() -> impl Strategy<Value = DateTime<Utc>> {
        let first = at("0001-01-01T00:00:00Z").timestamp();
        let last = at("9999-12-31T23:59:59Z").timestamp();
        (first..=last, 0..1_000_000_000u32).prop_map(|(secs, nanos)| {
            DateTime::from_timestamp(secs, nanos).expect("in chrono's range")
        })
    }

    proptest! {
        #[test]
        fn every_rfc3339_rendering_reads_back_as_the_same_instant(
            t in in_range_instant(),
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59),
            use_z in any::<bool>(),
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).expect("an offset");
            let shown = t.with_timezone(&offset);
            // RFC 3339 has four-digit years only.
            prop_assume!((0..=9999).contains(&shown.year()));
            let text = shown.to_rfc3339_opts(SecondsFormat::AutoSi, use_z);
            let moment = Moment::parse_in(&text, &Berlin).expect("RFC 3339 in range");
            let now = at(NOW);
            prop_assert_eq!(moment.resolve_in(Edge::Start, now, &Berlin), Ok(t), "{}", text);
            prop_assert_eq!(moment.resolve_in(Edge::End, now, &Berlin), Ok(t), "{}", text);
        }
    }
}
