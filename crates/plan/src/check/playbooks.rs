//! Playbooks: targets that match hosts, steps that do exactly one thing,
//! conditions on steps that run before, patterns that compile.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{error, listing, nearest};
use crate::inventory::{Inventory, Targets};
use crate::playbook::{Action, Condition, HealthCheck, Verify};
use crate::tree::{Loaded, Written};
use crate::{Diagnostic, Playbook, Source, Step, written};

/// The playbooks that check out; problems go to `out`.
pub(super) fn check(
    written: &Written,
    inventory: &Inventory,
    out: &mut Vec<Diagnostic>,
) -> Vec<Playbook> {
    let targets = inventory.targets();
    let checked = written
        .playbooks
        .iter()
        .filter_map(|loaded| playbook(loaded, inventory, &targets, out))
        .collect();
    duplicates(written, out);
    checked
}

fn playbook(
    loaded: &Loaded<written::Playbook>,
    inventory: &Inventory,
    targets: &Targets<'_>,
    out: &mut Vec<Diagnostic>,
) -> Option<Playbook> {
    let (source, playbook) = (&loaded.source, &loaded.value);
    let before = out.len();
    let name = playbook.name.get_ref();
    if playbook.targets.is_empty() {
        out.push(
            error(
                source,
                &playbook.name,
                format!("playbook `{name}` has no targets"),
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
                format!("playbook `{name}` has no steps"),
            )
            .with_help("add at least one [[steps]] table"),
        );
    }
    let mut steps = Vec::new();
    let mut earlier: Vec<&str> = Vec::new();
    for written in &playbook.steps {
        steps.extend(step(source, written, &earlier, out));
        if earlier.contains(&written.name.get_ref().as_str()) {
            out.push(
                error(
                    source,
                    &written.name,
                    format!("two steps are named `{}`", written.name.get_ref()),
                )
                .with_help("step names must be unique within a playbook; `when` refers to them"),
            );
        }
        earlier.push(written.name.get_ref());
    }
    (out.len() == before).then(|| Playbook {
        name: name.clone(),
        description: playbook.description.clone(),
        file: source.path.clone(),
        targets: playbook
            .targets
            .iter()
            .map(|t| t.get_ref().clone())
            .collect(),
        serial: playbook.serial.clone(),
        max_failures: playbook.max_failures,
        timeout: playbook.timeout,
        become_root: playbook.become_root,
        vars: playbook.vars.clone(),
        steps,
    })
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

fn step(
    source: &Source,
    step: &written::Step,
    earlier: &[&str],
    out: &mut Vec<Diagnostic>,
) -> Option<Step> {
    let when = step
        .when
        .as_ref()
        .map(|text| condition(source, text, earlier))
        .transpose()
        .map_err(|d| out.push(d));
    let action = action(source, step).map_err(|d| out.push(d));
    let (Ok(when), Ok(action)) = (when, action) else {
        return None;
    };
    Some(Step {
        name: step.name.get_ref().clone(),
        timeout: step.timeout,
        retries: step.retries,
        delay: step.delay,
        continue_on_error: step.continue_on_error,
        check: step.check,
        when,
        action,
    })
}

fn action(source: &Source, step: &written::Step) -> Result<Action, Diagnostic> {
    let name = step.name.get_ref();
    let actions = step.actions();
    if actions.len() != 1 {
        let found = if actions.is_empty() {
            "none".to_string()
        } else {
            actions.join(", ")
        };
        return Err(error(
            source,
            &step.name,
            format!("step `{name}` must have exactly one action"),
        )
        .with_help(format!(
            "found {found}; choose one of command, update, backup, verify, reboot"
        )));
    }
    if let Some(line) = &step.command {
        return Ok(Action::Command(line.clone()));
    }
    if let Some(update) = &step.update {
        return Ok(Action::Update(update.clone()));
    }
    if let Some(reboot) = &step.reboot {
        return Ok(Action::Reboot(reboot.clone()));
    }
    if let Some(verify) = &step.verify {
        return self::verify(source, name, verify).map(Action::Verify);
    }
    match &step.backup {
        Some(backup) if !backup.paths.is_empty() || !backup.streams.is_empty() => {
            Ok(Action::Backup(backup.clone()))
        }
        _ => Err(error(
            source,
            &step.name,
            format!("backup step `{name}` backs up nothing"),
        )
        .with_help("give it `paths` or `streams`")),
    }
}

/// A verify does one of three things; the fields of a health command belong
/// to it alone, so none is silently ignored.
fn verify(
    source: &Source,
    step: &str,
    written: &Spanned<written::Verify>,
) -> Result<Verify, Diagnostic> {
    let v = written.get_ref();
    let at = written.span();
    let chosen: Vec<&str> = [
        ("command", v.command.is_some()),
        ("backup_check", v.backup_check),
        ("restore_test", v.restore_test),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    let command = match (chosen.as_slice(), &v.command) {
        ([], _) => {
            return Err(source
                .error(at, format!("verify step `{step}` checks nothing"))
                .with_help("give it a `command`, or set `backup_check` or `restore_test`"));
        }
        ([_], Some(command)) => command,
        ([_], None) => {
            let extra = [
                ("expect_exit", v.expect_exit.is_some()),
                ("expect_output", v.expect_output.is_some()),
                ("retries", v.retries.is_some()),
                ("delay", v.delay.is_some()),
            ];
            if let Some((key, _)) = extra.iter().find(|(_, set)| *set) {
                return Err(source
                    .error(at, format!("`{key}` applies to a verify `command` only"))
                    .with_help("remove it, or verify with a command in a step of its own"));
            }
            return Ok(if v.backup_check {
                Verify::BackupCheck
            } else {
                Verify::RestoreTest
            });
        }
        (many, _) => {
            return Err(source
                .error(
                    at,
                    format!("verify step `{step}` does {} things at once", many.len()),
                )
                .with_help(format!(
                    "found {}; give each its own step, so each has its own result",
                    many.join(", ")
                )));
        }
    };
    let expect_output = match &v.expect_output {
        Some(pattern) => Some(regex(source, pattern)?),
        None => None,
    };
    Ok(Verify::Command(HealthCheck {
        command: command.clone(),
        expect_exit: v.expect_exit.unwrap_or(0),
        expect_output,
        retries: v.retries.unwrap_or(0),
        delay: v.delay,
    }))
}

fn regex(source: &Source, pattern: &Spanned<String>) -> Result<regex::Regex, Diagnostic> {
    regex::Regex::new(pattern.get_ref()).map_err(|err| {
        let first = err
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .trim_start_matches("error: ")
            .to_string();
        error(
            source,
            pattern,
            format!("`expect_output` is not a valid regular expression: {first}"),
        )
    })
}

fn condition(
    source: &Source,
    text: &Spanned<String>,
    earlier: &[&str],
) -> Result<Condition, Diagnostic> {
    let condition = Condition::parse(text.get_ref()).map_err(|message| {
        let d = error(source, text, message);
        let word = text.get_ref().trim().trim_start_matches("not ").trim();
        let word = word.split(':').next().unwrap_or(word);
        let words = ["changed", "failed", "ok", "reboot_required"];
        match nearest(word, words.into_iter()) {
            Some(best) if best != word => d.with_help(format!("did you mean `{best}`?")),
            _ => d,
        }
    })?;
    match &condition.step {
        Some(name) if !earlier.contains(&name.as_str()) => Err(error(
            source,
            text,
            format!("`when` refers to step `{name}`, which does not run before this one"),
        )
        .with_help(format!(
            "earlier steps: {}",
            listing(earlier.iter().copied())
        ))),
        _ => Ok(condition),
    }
}

fn duplicates(written: &Written, out: &mut Vec<Diagnostic>) {
    let mut first: BTreeMap<&str, &Loaded<written::Playbook>> = BTreeMap::new();
    for p in &written.playbooks {
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
