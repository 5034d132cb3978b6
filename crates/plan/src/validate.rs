//! Rules that span fields and files: references, names, time zones, windows
//! that never open, schedules that never fire inside their window.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use toml::Spanned;

use crate::cron::Cron;
use crate::inventory::{Inventory, Targets};
use crate::playbook::{Condition, Playbook, Step};
use crate::schedule::{Schedule, Window};
use crate::tree::{Loaded, Plan};
use crate::window::{self, HORIZON_DAYS, WindowRule};
use crate::{Diagnostic, Source};

/// Every problem that parsing alone cannot see.
pub fn validate(plan: &Plan) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let inventory = plan.inventory();
    let targets = inventory.targets();
    let windows = windows(plan, &mut out);
    for playbook in &plan.playbooks {
        check_playbook(playbook, &inventory, &targets, &mut out);
    }
    duplicate_playbooks(plan, &mut out);
    for file in &plan.schedules {
        for schedule in &file.value.schedule {
            check_schedule(&file.source, schedule, plan, &windows, &mut out);
        }
    }
    if let Some(loaded) = &plan.inventory {
        check_inventory(loaded, &windows, &mut out);
    }
    out
}

/// A window as defined in a schedules file, where it was written.
#[derive(Debug)]
pub struct WindowDef<'a> {
    pub source: &'a Source,
    pub name: &'a Spanned<String>,
    pub window: &'a Window,
}

impl WindowDef<'_> {
    /// The window's rule in its own time zone, or `default_tz` when it has
    /// none; errors point into its file.
    pub fn rule(&self, default_tz: Tz) -> Result<WindowRule, Vec<Diagnostic>> {
        build_window(self.source, self.window, default_tz)
    }
}

impl Plan {
    /// A window by name, in its own time zone or else `default_tz`; `None`
    /// when no valid window has that name (`nightshift check` says why).
    pub fn window_rule(&self, name: &str, default_tz: Tz) -> Option<WindowRule> {
        self.schedules.iter().find_map(|file| {
            let (_, window) = file
                .value
                .windows
                .iter()
                .find(|(n, _)| n.get_ref() == name)?;
            build_window(&file.source, window, default_tz).ok()
        })
    }

    /// A host's own window, by name and rule: the host's `window`, else
    /// that of the first of its groups that has one (UTC unless the window
    /// names its zone).
    pub fn host_window(&self, host: &str) -> Option<(String, WindowRule)> {
        self.host_windows().remove(host)
    }

    /// Every host's own window, worked out in one pass over the groups.
    pub fn host_windows(&self) -> BTreeMap<String, (String, WindowRule)> {
        let inventory = self.inventory();
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
        let mut rules: BTreeMap<String, Option<WindowRule>> = BTreeMap::new();
        names
            .into_iter()
            .filter_map(|(host, name)| {
                let rule = rules
                    .entry(name.clone())
                    .or_insert_with(|| self.window_rule(&name, Tz::UTC))
                    .clone()?;
                Some((host, (name, rule)))
            })
            .collect()
    }
}

/// All windows of all schedule files by name; a second definition of a name
/// is an error.
pub fn windows<'a>(plan: &'a Plan, out: &mut Vec<Diagnostic>) -> BTreeMap<String, WindowDef<'a>> {
    let mut defs: BTreeMap<String, WindowDef<'a>> = BTreeMap::new();
    for file in &plan.schedules {
        for (name, window) in &file.value.windows {
            if let Some(first) = defs.get(name.get_ref()) {
                let (line, _) = first.source.locate(first.name.span().start);
                out.push(
                    error(
                        &file.source,
                        name,
                        format!("window `{}` is defined twice", name.get_ref()),
                    )
                    .with_help(format!(
                        "the first is at {}:{line}",
                        first.source.path.display()
                    )),
                );
                continue;
            }
            let def = WindowDef {
                source: &file.source,
                name,
                window,
            };
            match def.rule(Tz::UTC) {
                Ok(rule) if rule.next_opening(&Utc::now()).is_none() => out.push(
                    error(&file.source, name, format!("window `{}` never opens", name.get_ref()))
                        .with_help(format!("no opening in the next {HORIZON_DAYS} days; check its days, month rule, blackouts and freezes")),
                ),
                Ok(_) => {}
                Err(problems) => out.extend(problems),
            }
            defs.insert(name.get_ref().clone(), def);
        }
    }
    defs
}

fn build_window(
    source: &Source,
    w: &Window,
    default_tz: Tz,
) -> Result<WindowRule, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut field = |value: &Spanned<String>, parse: &dyn Fn(&str) -> Result<(), String>| {
        if let Err(message) = parse(value.get_ref()) {
            problems.push(error(source, value, message));
        }
    };
    for day in &w.days {
        field(day, &|d| window::weekday(d).map(drop));
    }
    field(&w.start, &|t| window::time_of_day(t).map(drop));
    field(&w.end, &|t| window::time_of_day(t).map(drop));
    if let Some(monthly) = &w.monthly {
        field(monthly, &|m| m.parse::<window::MonthRule>().map(drop));
    }
    for d in &w.blackout {
        field(d, &|t| window::date(t).map(drop));
    }
    for f in &w.freeze {
        field(&f.from, &|t| window::date(t).map(drop));
        field(&f.to, &|t| window::date(t).map(drop));
    }
    let timezone = match &w.timezone {
        Some(tz) => match time_zone(source, tz) {
            Ok(tz) => tz,
            Err(d) => {
                problems.push(*d);
                default_tz
            }
        },
        None => default_tz,
    };
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
    let start = window::time_of_day(w.start.get_ref()).ok();
    if start.is_some() && start == window::time_of_day(w.end.get_ref()).ok() {
        problems.push(
            error(
                source,
                &w.end,
                "the window ends when it starts, so it never opens",
            )
            .with_help("give an `end` different from `start`"),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let date = |s: &Spanned<String>| window::date(s.get_ref()).unwrap_or(NaiveDate::MIN);
    Ok(WindowRule {
        days: w
            .days
            .iter()
            .filter_map(|d| window::weekday(d.get_ref()).ok())
            .collect(),
        monthly: w.monthly.as_ref().and_then(|m| m.get_ref().parse().ok()),
        start: window::time_of_day(w.start.get_ref()).unwrap_or_default(),
        end: window::time_of_day(w.end.get_ref()).unwrap_or_default(),
        timezone,
        blackout: w.blackout.iter().map(date).collect(),
        freeze: w
            .freeze
            .iter()
            .map(|f| (date(&f.from), date(&f.to)))
            .collect(),
    })
}

/// An IANA time zone, with the nearest names suggested when misspelt.
pub fn time_zone(source: &Source, tz: &Spanned<String>) -> Result<Tz, Box<Diagnostic>> {
    tz.get_ref().parse::<Tz>().map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        let d = error(source, tz, format!("unknown time zone `{}`", tz.get_ref()));
        Box::new(match nearest(tz.get_ref(), names) {
            Some(best) => d.with_help(format!("did you mean `{best}`?")),
            None => d.with_help("use an IANA name such as `Europe/Berlin` or `UTC`"),
        })
    })
}

fn check_playbook(
    loaded: &Loaded<Playbook>,
    inventory: &Inventory,
    targets: &Targets<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let (source, playbook) = (&loaded.source, &loaded.value);
    if playbook.targets.is_empty() {
        out.push(
            error(
                source,
                &playbook.name,
                format!("playbook `{}` has no targets", playbook.name.get_ref()),
            )
            .with_help("add `targets = [\"group:NAME\"]` or host names"),
        );
    }
    for target in &playbook.targets {
        let pattern = target.get_ref().trim_start_matches('!');
        if targets.matching(pattern).is_empty() {
            out.push(unmatched_target(source, target, inventory));
        }
    }
    if playbook.steps.is_empty() {
        out.push(
            error(
                source,
                &playbook.name,
                format!("playbook `{}` has no steps", playbook.name.get_ref()),
            )
            .with_help("add at least one [[steps]] table"),
        );
    }
    let mut earlier: Vec<&str> = Vec::new();
    for step in &playbook.steps {
        check_step(source, step, &earlier, out);
        if earlier.contains(&step.name.get_ref().as_str()) {
            out.push(
                error(
                    source,
                    &step.name,
                    format!("two steps are named `{}`", step.name.get_ref()),
                )
                .with_help("step names must be unique within a playbook; `when` refers to them"),
            );
        }
        earlier.push(step.name.get_ref());
    }
}

fn unmatched_target(
    source: &Source,
    target: &Spanned<String>,
    inventory: &Inventory,
) -> Diagnostic {
    let pattern = target.get_ref().trim_start_matches('!');
    let d = error(
        source,
        target,
        format!("target `{}` matches no host", target.get_ref()),
    );
    let (candidates, kind): (Vec<String>, &str) = match pattern.strip_prefix("group:") {
        Some(_) => (
            inventory
                .group_names()
                .iter()
                .map(|g| format!("group:{g}"))
                .collect(),
            "groups",
        ),
        None => (inventory.hosts.keys().cloned().collect(), "hosts"),
    };
    match nearest(pattern, candidates.iter().map(String::as_str)) {
        Some(best) => d.with_help(format!("did you mean `{best}`?")),
        None => d.with_help(format!(
            "known {kind}: {}",
            listing(candidates.iter().map(String::as_str))
        )),
    }
}

fn check_step(source: &Source, step: &Step, earlier: &[&str], out: &mut Vec<Diagnostic>) {
    let actions = step.actions();
    if actions.len() != 1 {
        let found = if actions.is_empty() {
            "none".to_string()
        } else {
            actions.join(", ")
        };
        out.push(
            error(
                source,
                &step.name,
                format!(
                    "step `{}` must have exactly one action",
                    step.name.get_ref()
                ),
            )
            .with_help(format!(
                "found {found}; choose one of command, update, backup, verify, reboot"
            )),
        );
    }
    if let Some(when) = &step.when {
        match Condition::parse(when.get_ref()) {
            Err(message) => out.push(error(source, when, message)),
            Ok(Condition {
                step: Some(name), ..
            }) if !earlier.contains(&name.as_str()) => out.push(
                error(
                    source,
                    when,
                    format!("`when` refers to step `{name}`, which does not run before this one"),
                )
                .with_help(format!(
                    "earlier steps: {}",
                    listing(earlier.iter().copied())
                )),
            ),
            Ok(_) => {}
        }
    }
    if let Some(verify) = &step.verify {
        if verify.command.is_none() && !verify.backup_check && !verify.restore_test {
            out.push(
                error(
                    source,
                    &step.name,
                    format!("verify step `{}` checks nothing", step.name.get_ref()),
                )
                .with_help("give it a `command`, or set `backup_check` or `restore_test`"),
            );
        }
        if let Some(pattern) = &verify.expect_output
            && let Err(err) = regex::Regex::new(pattern.get_ref())
        {
            let first = err
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            out.push(error(
                source,
                pattern,
                format!("`expect_output` is not a valid regular expression: {first}"),
            ));
        }
    }
    if let Some(backup) = &step.backup
        && backup.paths.is_empty()
        && backup.streams.is_empty()
    {
        out.push(
            error(
                source,
                &step.name,
                format!("backup step `{}` backs up nothing", step.name.get_ref()),
            )
            .with_help("give it `paths` or `streams`"),
        );
    }
}

fn duplicate_playbooks(plan: &Plan, out: &mut Vec<Diagnostic>) {
    let mut first: BTreeMap<&str, &Loaded<Playbook>> = BTreeMap::new();
    for p in &plan.playbooks {
        let name = p.value.name.get_ref().as_str();
        match first.get(name) {
            Some(earlier) => out.push(
                error(
                    &p.source,
                    &p.value.name,
                    format!("playbook name `{name}` is already used"),
                )
                .with_help(format!(
                    "by {}; schedules name playbooks, so names must be unique",
                    earlier.source.path.display()
                )),
            ),
            None => {
                first.insert(name, p);
            }
        }
    }
}

fn check_schedule(
    source: &Source,
    schedule: &Schedule,
    plan: &Plan,
    windows: &BTreeMap<String, WindowDef<'_>>,
    out: &mut Vec<Diagnostic>,
) {
    let name = schedule.playbook.get_ref();
    if plan.playbook(name).is_none() && !plan.broken_playbooks.contains(name) {
        let names = plan
            .playbooks
            .iter()
            .map(|p| p.value.name.get_ref().as_str());
        out.push(missing(source, &schedule.playbook, "playbook", names));
    }
    let cron = parse_cron(source, &schedule.cron)
        .map_err(|d| out.push(*d))
        .ok();
    let tz = time_zone(source, &schedule.timezone)
        .map_err(|d| out.push(*d))
        .ok();
    let Some(def) = windows.get(schedule.window.get_ref()) else {
        out.push(missing(
            source,
            &schedule.window,
            "window",
            windows.keys().map(String::as_str),
        ));
        return;
    };
    let (Some(cron), Some(tz), Ok(rule)) = (cron, tz, def.rule(tz.unwrap_or(Tz::UTC))) else {
        return;
    };
    if schedule.enabled && crate::next::fires_in(&cron, tz, &rule, Utc::now(), 1).is_empty() {
        out.push(
            error(
                source,
                &schedule.cron,
                format!(
                    "`{}` never fires inside window `{}`",
                    schedule.cron.get_ref(),
                    schedule.window.get_ref()
                ),
            )
            .with_help(format!(
                "the window opens {}; change the cron expression or the window",
                describe(&rule)
            )),
        );
    }
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

fn check_inventory(
    loaded: &Loaded<Inventory>,
    windows: &BTreeMap<String, WindowDef<'_>>,
    out: &mut Vec<Diagnostic>,
) {
    let (source, inventory) = (&loaded.source, &loaded.value);
    let window_names = || windows.keys().map(String::as_str);
    let groups = inventory.group_names();
    stray_groups(source, inventory, out);
    for host in inventory.hosts.values() {
        if let Some(w) = host
            .window
            .as_ref()
            .filter(|w| !windows.contains_key(w.get_ref()))
        {
            out.push(missing(source, w, "window", window_names()));
        }
    }
    for group in inventory.groups.values() {
        for member in group
            .members
            .iter()
            .filter(|m| !inventory.hosts.contains_key(m.get_ref()))
        {
            out.push(missing(
                source,
                member,
                "host",
                inventory.hosts.keys().map(String::as_str),
            ));
        }
        for child in group
            .children
            .iter()
            .filter(|c| !groups.contains(c.get_ref().as_str()))
        {
            out.push(missing(source, child, "group", groups.iter().copied()));
        }
        if let Some(w) = group
            .window
            .as_ref()
            .filter(|w| !windows.contains_key(w.get_ref()))
        {
            out.push(missing(source, w, "window", window_names()));
        }
    }
}

/// A group that no `[groups]` table declares and only one host names, while
/// a group of a very similar name exists, is almost surely a typo that would
/// quietly drop the host out of its group.
fn stray_groups(source: &Source, inventory: &Inventory, out: &mut Vec<Diagnostic>) {
    let mut named: BTreeMap<&str, Vec<&Spanned<String>>> = BTreeMap::new();
    for host in inventory.hosts.values() {
        for group in &host.groups {
            named.entry(group.get_ref()).or_default().push(group);
        }
    }
    for (name, uses) in &named {
        let [only] = uses.as_slice() else { continue };
        if inventory.groups.contains_key(*name) {
            continue;
        }
        let others = named
            .keys()
            .copied()
            .filter(|g| g != name && named[g].len() > 1);
        let others = others.chain(inventory.groups.keys().map(String::as_str));
        if let Some(best) = nearest(name, others) {
            out.push(
                error(
                    source,
                    only,
                    format!("group `{name}` is named by this host alone"),
                )
                .with_help(format!(
                    "did you mean `{best}`? (declare `[groups.{name}]` if it is meant)"
                )),
            );
        }
    }
}

fn missing<'a>(
    source: &Source,
    name: &Spanned<String>,
    kind: &str,
    known: impl Iterator<Item = &'a str> + Clone,
) -> Diagnostic {
    let d = error(
        source,
        name,
        format!("{kind} `{}` is not defined", name.get_ref()),
    );
    match nearest(name.get_ref(), known.clone()) {
        Some(best) => d.with_help(format!("did you mean `{best}`?")),
        None => d.with_help(format!("defined {kind}s: {}", listing(known))),
    }
}

fn error(source: &Source, at: &Spanned<String>, message: impl Into<String>) -> Diagnostic {
    source.error(span(at), message)
}

fn span(at: &Spanned<String>) -> Range<usize> {
    at.span()
}

fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let candidates: Vec<String> = candidates.map(str::to_string).collect();
    crate::diagnostic::suggest(word, &candidates)
}

fn listing<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: BTreeSet<&str> = names.collect();
    match names.len() {
        0 => "none".to_string(),
        n if n > 12 => format!(
            "{} and {} more",
            names
                .iter()
                .take(12)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            n - 12
        ),
        _ => names.into_iter().collect::<Vec<_>>().join(", "),
    }
}

/// `[[exception]]`s of the config: each names one host or one group, and
/// one the inventory has.
pub fn exceptions(
    exceptions: &[crate::Exception],
    source: &Source,
    inventory: &Inventory,
) -> Vec<Diagnostic> {
    let groups = inventory.group_names();
    let mut out = Vec::new();
    for e in exceptions {
        match (&e.host, &e.group) {
            (Some(h), None) if !inventory.hosts.contains_key(h.get_ref()) => {
                out.push(source.error(
                    h.span(),
                    format!(
                        "exception for host `{}`, which the inventory does not have",
                        h.get_ref()
                    ),
                ))
            }
            (None, Some(g)) if !groups.contains(g.get_ref().as_str()) => out.push(source.error(
                g.span(),
                format!(
                    "exception for group `{}`, which the inventory does not have",
                    g.get_ref()
                ),
            )),
            _ if e.policies.is_empty() => out.push(
                source
                    .error(
                        e.reason.span(),
                        "this exception names no policies, so it exempts nothing",
                    )
                    .with_help("list them: policies = [\"backup_rpo\", \"patch_security\"]"),
            ),
            (Some(_), Some(_)) | (None, None) => out.push(
                source
                    .error(
                        e.reason.span(),
                        "an exception names one `host` or one `group`",
                    )
                    .with_help("write one [[exception]] per host or group"),
            ),
            _ => {}
        }
    }
    out
}
