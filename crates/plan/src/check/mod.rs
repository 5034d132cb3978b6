//! From what was written to what runs: every rule that parsing alone cannot
//! see (references, names, time zones, windows that never open, schedules
//! that never fire inside their window), applied while the checked
//! [`Plan`] is built. The same pass serves `nightshift check` and every
//! command that runs something, so the two cannot disagree.

mod inventory;
mod playbooks;
mod schedules;

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use toml::Spanned;

use crate::inventory::Inventory;
use crate::schedule::{HostWindow, Window};
use crate::tree::{CheckedFile, Written};
use crate::{Diagnostic, Playbook, Schedule, Source};

pub use schedules::parse_cron;

/// A plan that passed every check: what `run`, the daemon, `exec`, `status`,
/// `report` and `schedule next` work on. Nothing in it is a string still to
/// be parsed.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub playbooks: Vec<Playbook>,
    /// Every schedule, enabled or not, in file order.
    pub schedules: Vec<Schedule>,
    pub windows: BTreeMap<String, Window>,
    /// The inventory file's, or the embedded one (`localhost` alone).
    pub inventory: Inventory,
    /// Each host's own window, for the hosts that have one.
    pub host_windows: BTreeMap<String, HostWindow>,
    /// The files the plan was read from.
    pub files: Vec<CheckedFile>,
}

impl Plan {
    pub fn playbook(&self, name: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.name == name)
    }

    /// A window by name, read in `zone` unless it names its own.
    pub fn window(&self, name: &str, zone: Tz) -> Option<crate::window::WindowRule> {
        self.windows.get(name).map(|w| w.in_zone(zone))
    }
}

/// Checks everything written; the plan, or every problem found.
pub(crate) fn check(written: Written, files: Vec<CheckedFile>) -> Result<Plan, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let windows = schedules::windows(&written, &mut out);
    let inventory = written.inventory().into_owned();
    let playbooks = playbooks::check(&written, &inventory, &mut out);
    let schedules = schedules::check(&written, &windows, &mut out);
    if let Some(loaded) = &written.inventory {
        inventory::check(loaded, &windows, &mut out);
    }
    if let Some((source, exceptions)) = &written.config {
        out.extend(inventory::exceptions(source, exceptions, &inventory));
    }
    if !out.is_empty() {
        return Err(out);
    }
    let host_windows = schedules::host_windows(&inventory, &windows);
    Ok(Plan {
        playbooks,
        schedules,
        windows,
        inventory,
        host_windows,
        files,
    })
}

fn error(source: &Source, at: &Spanned<String>, message: impl Into<String>) -> Diagnostic {
    source.error(at.span(), message)
}

/// An IANA time zone, with the nearest names suggested when misspelt.
fn time_zone(source: &Source, tz: &Spanned<String>) -> Result<Tz, Box<Diagnostic>> {
    tz.get_ref().parse::<Tz>().map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        let d = error(source, tz, format!("unknown time zone `{}`", tz.get_ref()));
        Box::new(match nearest(tz.get_ref(), names) {
            Some(best) => d.with_help(format!("did you mean `{best}`?")),
            None => d.with_help("use an IANA name such as `Europe/Berlin` or `UTC`"),
        })
    })
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
