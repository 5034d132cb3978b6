//! Windows and schedules: every field parsed once, every reference resolved,
//! and a schedule that can never fire inside its window refused.

use std::collections::BTreeMap;

use chrono::Utc;
use chrono_tz::Tz;
use toml::Spanned;

use super::{error, missing, time_zone};
use crate::cron::Cron;
use crate::inventory::Inventory;
use crate::schedule::{HostWindow, Window};
use crate::tree::Written;
use crate::window::{self, HORIZON_DAYS, WindowRule};
use crate::{Diagnostic, Schedule, Source, written};

/// All windows of all schedule files by name. A second definition of a
/// name, a field that does not parse and a window that never opens are
/// errors; the windows that check out are returned.
pub(super) fn windows(written: &Written, out: &mut Vec<Diagnostic>) -> BTreeMap<String, Window> {
    let mut first: BTreeMap<&str, (&Source, &Spanned<String>)> = BTreeMap::new();
    let mut checked = BTreeMap::new();
    for file in &written.schedules {
        for (name, w) in &file.value.windows {
            if let Some((source, earlier)) = first.get(name.get_ref().as_str()) {
                let (line, _) = source.locate(earlier.span().start);
                out.push(
                    error(
                        &file.source,
                        name,
                        format!("window `{}` is defined twice", name.get_ref()),
                    )
                    .with_help(format!("the first is at {}:{line}", source.path.display())),
                );
                continue;
            }
            first.insert(name.get_ref(), (&file.source, name));
            match window(&file.source, w) {
                Ok(rule) if rule.rule.next_opening(&Utc::now()).is_none() => out.push(
                    error(&file.source, name, format!("window `{}` never opens", name.get_ref()))
                        .with_help(format!("no opening in the next {HORIZON_DAYS} days; check its days, month rule, blackouts and freezes")),
                ),
                Ok(rule) => {
                    checked.insert(name.get_ref().clone(), rule);
                }
                Err(problems) => out.extend(problems),
            }
        }
    }
    checked
}

fn window(source: &Source, w: &written::Window) -> Result<Window, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let days = every(source, &w.days, window::weekday, &mut problems);
    let blackout = every(source, &w.blackout, window::date, &mut problems);
    let start = parsed(source, &w.start, window::time_of_day, &mut problems);
    let end = parsed(source, &w.end, window::time_of_day, &mut problems);
    let monthly = w
        .monthly
        .as_ref()
        .and_then(|m| parsed(source, m, str::parse::<window::MonthRule>, &mut problems));
    let freeze: Vec<_> = w
        .freeze
        .iter()
        .filter_map(|f| {
            let from = parsed(source, &f.from, window::date, &mut problems);
            Some((from?, parsed(source, &f.to, window::date, &mut problems)?))
        })
        .collect();
    let timezone = w
        .timezone
        .as_ref()
        .and_then(|tz| time_zone(source, tz).map_err(|d| problems.push(*d)).ok());
    if let (Some(monthly), false) = (&w.monthly, w.days.is_empty()) {
        problems.push(
            error(
                source,
                monthly,
                "a window has `days` or `monthly`, not both",
            )
            .with_help("a month rule already names the day; remove `days`"),
        );
    }
    if start.is_some() && start == end {
        problems.push(
            error(
                source,
                &w.end,
                "the window ends when it starts, so it never opens",
            )
            .with_help("give an `end` different from `start`"),
        );
    }
    match (start, end) {
        (Some(start), Some(end)) if problems.is_empty() => Ok(Window {
            rule: WindowRule {
                days,
                monthly,
                start,
                end,
                timezone: timezone.unwrap_or(Tz::UTC),
                blackout,
                freeze,
            },
            own_zone: timezone.is_some(),
        }),
        _ => Err(problems),
    }
}

fn every<T>(
    source: &Source,
    values: &[Spanned<String>],
    parse: fn(&str) -> Result<T, String>,
    problems: &mut Vec<Diagnostic>,
) -> Vec<T> {
    values
        .iter()
        .filter_map(|v| parsed(source, v, parse, problems))
        .collect()
}

/// One field parsed, or its problem placed at it.
fn parsed<T, E: ToString>(
    source: &Source,
    value: &Spanned<String>,
    parse: impl Fn(&str) -> Result<T, E>,
    problems: &mut Vec<Diagnostic>,
) -> Option<T> {
    parse(value.get_ref())
        .map_err(|e| problems.push(error(source, value, e.to_string())))
        .ok()
}

/// Every schedule, resolved; problems go to `out`.
pub(super) fn check(
    written: &Written,
    windows: &BTreeMap<String, Window>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Schedule> {
    let all_windows: Vec<&str> = written
        .schedules
        .iter()
        .flat_map(|f| f.value.windows.keys().map(|k| k.get_ref().as_str()))
        .collect();
    let mut checked = Vec::new();
    for file in &written.schedules {
        for s in &file.value.schedule {
            let playbook = s.playbook.get_ref();
            let known = written.playbook_names().any(|p| p == playbook)
                || written.broken_playbooks.contains(playbook);
            if !known {
                out.push(missing(
                    &file.source,
                    &s.playbook,
                    "playbook",
                    written.playbook_names(),
                ));
            }
            if !all_windows.contains(&s.window.get_ref().as_str()) {
                out.push(missing(
                    &file.source,
                    &s.window,
                    "window",
                    all_windows.iter().copied(),
                ));
            }
            checked.extend(schedule(&file.source, s, windows, out));
        }
    }
    checked
}

fn schedule(
    source: &Source,
    s: &written::Schedule,
    windows: &BTreeMap<String, Window>,
    out: &mut Vec<Diagnostic>,
) -> Option<Schedule> {
    let cron = parse_cron(source, &s.cron).map_err(|d| out.push(*d));
    let timezone = time_zone(source, &s.timezone).map_err(|d| out.push(*d));
    let (Ok(cron), Ok(timezone)) = (cron, timezone) else {
        return None;
    };
    let window = windows.get(s.window.get_ref())?.in_zone(timezone);
    if s.enabled && crate::next::fires_in(&cron, timezone, &window, Utc::now(), 1).is_empty() {
        out.push(
            error(
                source,
                &s.cron,
                format!(
                    "`{}` never fires inside window `{}`",
                    s.cron.get_ref(),
                    s.window.get_ref()
                ),
            )
            .with_help(format!(
                "the window opens {}; change the cron expression or the window",
                describe(&window)
            )),
        );
        return None;
    }
    let key = [&s.playbook, &s.cron, &s.timezone, &s.window]
        .map(|field| field.get_ref().as_str())
        .join("|");
    Some(Schedule {
        key,
        playbook: s.playbook.get_ref().clone(),
        cron,
        timezone,
        window_name: s.window.get_ref().clone(),
        window,
        enabled: s.enabled,
        catch_up: s.catch_up,
    })
}

/// A cron value parsed, with errors pointing inside the quoted string.
pub fn parse_cron(source: &Source, cron: &Spanned<String>) -> Result<Cron, Box<Diagnostic>> {
    cron.get_ref().parse::<Cron>().map_err(|err| {
        let span = cron.span();
        // Point inside the value only when its text is the expression
        // verbatim between single-character quotes; otherwise at the value.
        let raw = source.text.get(span.clone()).unwrap_or("");
        let verbatim = raw.len() == cron.get_ref().len() + 2
            && raw.get(1..raw.len() - 1) == Some(cron.get_ref());
        let at = if verbatim {
            span.start + 1 + err.start..span.start + 1 + err.start + err.len
        } else {
            span
        };
        Box::new(source.error(at, err.message))
    })
}

fn describe(rule: &WindowRule) -> String {
    let days = match (&rule.monthly, rule.days.is_empty()) {
        (Some(m), _) => format!("on the {m}"),
        (None, true) => "every day".to_string(),
        (None, false) => format!(
            "on {}",
            rule.days
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{days} {}-{} {}",
        rule.start.format("%H:%M"),
        rule.end.format("%H:%M"),
        rule.timezone
    )
}

/// Every host's own window: the host's `window`, else that of the first of
/// its groups that has one, read in UTC unless the window names its zone.
pub(super) fn host_windows(
    inventory: &Inventory,
    windows: &BTreeMap<String, Window>,
) -> BTreeMap<String, HostWindow> {
    let resolver = inventory.targets();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (group, def) in &inventory.groups {
        let Some(window) = &def.window else { continue };
        for host in resolver.group_hosts(group) {
            names
                .entry(host.to_string())
                .or_insert_with(|| window.get_ref().clone());
        }
    }
    for (host, def) in &inventory.hosts {
        if let Some(window) = &def.window {
            names.insert(host.clone(), window.get_ref().clone());
        }
    }
    names
        .into_iter()
        .filter_map(|(host, name)| {
            let rule = windows.get(&name)?.in_zone(Tz::UTC);
            Some((host, HostWindow { name, rule }))
        })
        .collect()
}
