//! crontab(5) expressions, evaluated with the `cron` crate underneath.
//!
//! The `cron` crate speaks another dialect (a seconds field, Sunday = 1, and
//! day-of-month AND day-of-week), so expressions are parsed here into
//! explicit sets, validated with precise positions, and re-emitted in the
//! crate's syntax. When both day fields are restricted, crontab fires when
//! either matches (the Vixie rule); that is two `cron` schedules whose fire
//! times are merged. Daylight saving is handled on top: the crate iterates
//! wall-clock (naive) times, and each is placed in the time zone here.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono::{Datelike, Timelike};

/// A field's allowed values, one bit each.
type Bits = u64;

#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A problem in a cron expression, at a byte range of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    pub message: String,
    pub start: usize,
    pub len: usize,
}

/// A parsed crontab(5) expression.
#[derive(Debug, Clone)]
pub struct Cron {
    source: String,
    minutes: Bits,
    hours: Bits,
    days_of_month: Bits,
    months: Bits,
    /// Sunday is 0 (7 is folded into it).
    days_of_week: Bits,
    dom_restricted: bool,
    dow_restricted: bool,
    /// One schedule (AND) or two whose union is the OR rule.
    schedules: Vec<cron::Schedule>,
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expanded = expand_macro(text)?;
        let fields = split_fields(&expanded, text)?;
        let [minute, hour, dom, month, dow] = fields;
        let mut cron = Self {
            source: text.to_string(),
            minutes: parse_field(minute, MINUTE)?,
            hours: parse_field(hour, HOUR)?,
            days_of_month: parse_field(dom, DAY_OF_MONTH)?,
            months: parse_field(month, MONTH)?,
            days_of_week: fold_sunday(parse_field(dow, DAY_OF_WEEK)?),
            dom_restricted: !dom.1.starts_with('*'),
            dow_restricted: !dow.1.starts_with('*'),
            schedules: Vec::new(),
        };
        cron.schedules = cron.to_schedules(text)?;
        Ok(cron)
    }
}

impl Cron {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a wall-clock minute matches, by crontab(5)'s rules.
    pub fn matches(&self, at: NaiveDateTime) -> bool {
        let has = |bits: Bits, v: u32| bits & (1 << v) != 0;
        let dom = has(self.days_of_month, at.day());
        let dow = has(self.days_of_week, at.weekday().num_days_from_sunday());
        let day = if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            dom && dow
        };
        at.second() == 0
            && has(self.minutes, at.minute())
            && has(self.hours, at.hour())
            && has(self.months, at.month())
            && day
    }

    /// The next wall-clock minute strictly after `after` that matches.
    pub fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let after = Utc.from_utc_datetime(&after);
        self.schedules
            .iter()
            .filter_map(|s| s.after(&after).next())
            .min()
            .map(|t| t.naive_utc())
    }

    /// The next fire time strictly after `after` in `tz`. A wall-clock time
    /// skipped by a spring-forward jump fires once, right after the jump; one
    /// repeated by a fall-back fires once, at its first occurrence.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = after.timezone();
        let mut naive = after.naive_local();
        for _ in 0..10_000 {
            naive = self.next_naive(naive)?;
            let fire = match tz.from_local_datetime(&naive) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
                LocalResult::None => first_instant_after_gap(&tz, naive)?,
            };
            if fire > *after {
                return Some(fire);
            }
        }
        None
    }

    fn to_schedules(&self, text: &str) -> Result<Vec<cron::Schedule>, CronError> {
        let all_days: Bits = 0x7f;
        let all_dom: Bits = ((1 << 32) - 1) & !1;
        let variants: Vec<(Bits, Bits)> = if self.dom_restricted && self.dow_restricted {
            vec![(self.days_of_month, all_days), (all_dom, self.days_of_week)]
        } else {
            vec![(self.days_of_month, self.days_of_week)]
        };
        variants
            .into_iter()
            .map(|(dom, dow)| {
                let expr = format!(
                    "0 {} {} {} {} {}",
                    list(self.minutes, 0),
                    list(self.hours, 0),
                    list(dom, 0),
                    list(self.months, 0),
                    list(dow, 1),
                );
                cron::Schedule::from_str(&expr).map_err(|err| CronError {
                    message: format!("cron expression `{text}` is not supported: {err}"),
                    start: 0,
                    len: text.len(),
                })
            })
            .collect()
    }
}

/// The first instant whose wall-clock time is at or after a time that the
/// zone skips.
fn first_instant_after_gap<Tz: TimeZone>(tz: &Tz, skipped: NaiveDateTime) -> Option<DateTime<Tz>> {
    let mut probe = skipped;
    for _ in 0..(24 * 60) {
        probe = probe.checked_add_signed(Duration::minutes(1))?;
        let probe_minute = probe.with_second(0)?;
        if let Some(t) = tz.from_local_datetime(&probe_minute).earliest() {
            return Some(t);
        }
    }
    None
}

/// The values in `bits` as a comma list, shifted by `offset` (the `cron`
/// crate counts weekdays from 1).
fn list(bits: Bits, offset: u32) -> String {
    (0..64)
        .filter(|v| bits & (1 << v) != 0)
        .map(|v| (v + offset).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn fold_sunday(bits: Bits) -> Bits {
    if bits & (1 << 7) != 0 {
        (bits & !(1 << 7)) | 1
    } else {
        bits
    }
}

fn expand_macro(text: &str) -> Result<String, CronError> {
    let trimmed = text.trim();
    if !trimmed.starts_with('@') {
        return Ok(text.to_string());
    }
    let expanded = match trimmed {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            return Err(CronError {
                message: format!(
                    "`{trimmed}` is not a schedule nightshift can keep; use @hourly, @daily, @weekly, @monthly, @yearly or five fields"
                ),
                start: text.len() - text.trim_start().len(),
                len: trimmed.len(),
            });
        }
    };
    Ok(expanded.to_string())
}

/// The five fields with their byte offsets in the original text (offset 0
/// for every field of an expanded macro).
fn split_fields<'a>(expanded: &'a str, original: &str) -> Result<[(usize, &'a str); 5], CronError> {
    let base = expanded.as_ptr() as usize;
    let same = expanded == original;
    let fields: Vec<(usize, &str)> = expanded
        .split_whitespace()
        .map(|f| (if same { f.as_ptr() as usize - base } else { 0 }, f))
        .collect();
    fields.clone().try_into().map_err(|_| CronError {
        message: format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), `{original}` has {}",
            fields.len()
        ),
        start: 0,
        len: original.len(),
    })
}

fn parse_field((offset, field): (usize, &str), spec: Field) -> Result<Bits, CronError> {
    let mut bits = 0;
    let mut at = offset;
    for item in field.split(',') {
        bits |= parse_item(item, spec).map_err(|message| CronError {
            message,
            start: at,
            len: item.len().max(1),
        })?;
        at += item.len() + 1;
    }
    Ok(bits)
}

fn parse_item(item: &str, spec: Field) -> Result<Bits, String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                format!(
                    "step `{step}` in the {} field must be a positive number",
                    spec.name
                )
            })?;
            (range, step)
        }
        None => (item, 1),
    };
    let (low, high) = if range == "*" {
        (spec.min, if spec.max == 7 { 6 } else { spec.max })
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (value(a, spec)?, value(b, spec)?);
        if a > b {
            return Err(format!(
                "range `{range}` in the {} field runs backwards; write the smaller value first",
                spec.name
            ));
        }
        (a, b)
    } else {
        let v = value(range, spec)?;
        if step > 1 || item.contains('/') {
            return Err(format!(
                "`{item}`: a step needs a range in crontab(5); write `{range}-{}/{step}` or `*/{step}`",
                spec.max
            ));
        }
        (v, v)
    };
    Ok((low..=high)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | (1 << v)))
}

fn value(text: &str, spec: Field) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + spec.min);
    }
    match text.parse::<u32>() {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        Ok(v) => Err(format!(
            "{v} is out of range for the {} field ({}-{})",
            spec.name, spec.min, spec.max
        )),
        Err(_) if spec.names.is_empty() => Err(format!(
            "`{text}` is not a number for the {} field",
            spec.name
        )),
        Err(_) => Err(format!(
            "`{text}` is not a {} (use {}-{} or {})",
            spec.name,
            spec.min,
            spec.max,
            spec.names.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
