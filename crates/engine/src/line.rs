//! An event as one plain line of text: what `nightshift run` prints when
//! its output is not a terminal, and what the daemon logs.

use crate::event::{Event, StepReport};

/// Where the whole of a list that a step line shortens can be read: the
/// catalog's record of the run, or, when nothing is recorded (`--check`),
/// the JSON events.
pub fn where_listed(run: Option<i64>) -> String {
    match run {
        Some(run) => format!("`nightshift runs show {run}` lists them"),
        None => "`--json` lists them".to_string(),
    }
}

/// An event as one plain log line.
pub fn log_line(event: &Event) -> Option<String> {
    plain_line(event, None)
}

/// An event as one plain log line; `lists` says where the whole of a
/// shortened list can be read.
pub fn plain_line(event: &Event, lists: Option<&str>) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            playbook,
            hosts,
            batches,
            max_failures,
            check,
            run,
        } => format!(
            "{playbook} · {hosts} hosts · batches {} · max failures {}{}{}",
            batches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            if *max_failures == usize::MAX {
                "none".to_string()
            } else {
                max_failures.to_string()
            },
            if *check {
                " · check mode: nothing is changed"
            } else {
                ""
            },
            run.map(|r| format!(" · run {r}")).unwrap_or_default(),
        ),
        Event::BatchStarted { batch, of, hosts } => {
            format!("batch {batch}/{of}: {}", hosts.join(" "))
        }
        Event::StepStarted { host, step, .. } => format!("{host}  {step}: started"),
        Event::Progress { .. } => return None,
        Event::StepFinished { host, step } => step_line(host, step, lists),
        Event::HostFinished(job) => format!(
            "{}  {}{}",
            job.host,
            job.status,
            job.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        Event::Halted { reason } => format!("halting: {reason}; no new batch starts"),
        Event::RunFinished(_) => return None,
    })
}

/// How long a step line may grow to name what its summary counts.
pub const LINE_WIDTH: usize = 150;

/// "web1  security updates: ok 2 packages upgraded (12.3s)"; a summary that
/// counts a list names as many of it as the line has room for (one at
/// least) and says where the rest is.
pub fn step_line(host: &str, step: &StepReport, lists: Option<&str>) -> String {
    let line = |listed: &str| {
        format!(
            "{host}  {}: {} {}{listed} ({:.1}s)",
            step.step,
            step.status,
            step.summary,
            step.elapsed.as_secs_f64()
        )
    };
    let names: Vec<&str> = step.listed.iter().map(String::as_str).collect();
    let shortened = |few: &str, more: usize| match lists {
        Some(lists) => format!(": {few} … and {more} more; {lists}"),
        None => format!(": {few} … and {more} more"),
    };
    if names.is_empty() {
        return line("");
    }
    let whole = line(&format!(": {}", names.join(", ")));
    if whole.chars().count() <= LINE_WIDTH {
        return whole;
    }
    let bare = line(&shortened("", names.len())).chars().count();
    let (few, shown) = first_few(&names, LINE_WIDTH.saturating_sub(bare));
    line(&shortened(&few, names.len() - shown))
}

/// The first of `names` that fit in `room` characters (at least one),
/// joined, and how many that is.
pub fn first_few(names: &[&str], room: usize) -> (String, usize) {
    let mut text = String::new();
    let mut shown = 0;
    for name in names {
        let width = name.chars().count() + if shown == 0 { 0 } else { 2 };
        if shown > 0 && text.chars().count() + width > room {
            break;
        }
        if shown > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
        shown += 1;
    }
    (text, shown)
}

#[cfg(test)]
mod tests {
    use super::first_few;

    #[test]
    fn a_long_first_name_is_shown_whole() {
        let names = ["a-very-long-package-name-indeed", "bash"];
        assert_eq!(
            first_few(&names, 10),
            ("a-very-long-package-name-indeed".to_string(), 1)
        );
        assert_eq!(first_few(&names[1..], 10), ("bash".to_string(), 1));
        assert_eq!(first_few(&[], 10), (String::new(), 0));
    }
}
