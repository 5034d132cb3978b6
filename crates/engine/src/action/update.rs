//! `update = { security_only, hold, allow, deny }`: refresh the package
//! metadata, list what can be upgraded (and which upgrades are security
//! updates), upgrade what the policy selects, non-interactively, and
//! record each package's version before and after.

use std::time::Duration;

use chrono::Utc;
use nightshift_catalog::{PackageChange, PackageState};
use nightshift_plan::Update;

use crate::job::HostRun;
use crate::packages::{self, Manager, Upgrade};
use crate::step::{Done, StepError};

pub async fn run(host: &mut HostRun<'_>, policy: &Update, limit: Duration) -> Done {
    match update(host, policy, limit).await {
        Ok(done) => done,
        Err(error) => Done::fail(error),
    }
}

async fn update(host: &HostRun<'_>, policy: &Update, limit: Duration) -> Result<Done, StepError> {
    let manager = detect(host).await?;
    let mut done = Done::default();
    if !host.check {
        host.progress(format!("{manager:?}: refreshing package metadata"));
        let refresh = super::command(host, manager.refresh(), limit);
        let out = super::exec(host, &refresh).await?;
        done.output.extend(super::log_of(&out));
        if !out.status.success() {
            return Err(StepError::new(
                "update_failed",
                format!("refreshing the package metadata failed ({})", out.status),
            ));
        }
    }
    let upgrades = list(host, manager, limit).await?;
    record_state(host, &upgrades).await;
    let selection = packages::select(upgrades.clone(), policy);
    for (left, why) in &selection.left {
        done.say(format!("not upgrading {} {}: {why}", left.name, left.to));
    }
    let chosen = selection.apply;
    if chosen.is_empty() {
        done.summary = format!(
            "nothing to upgrade ({} left as the policy says)",
            selection.left.len()
        );
        done.skipped = host.check;
        done.reboot_required = super::reboot::required(host).await?.is_some();
        return Ok(done);
    }
    if host.check {
        would_upgrade(&chosen, &mut done);
        done.reboot_required = super::reboot::required(host).await?.is_some();
        return Ok(done);
    }
    hold(host, manager, &selection.left, limit, &mut done).await?;
    let wanted: Vec<String> = chosen.iter().map(|u| u.name.clone()).collect();
    host.progress(format!("upgrading {} packages", wanted.len()));
    let apply = super::command(host, manager.apply(&wanted), limit);
    let out = super::exec(host, &apply).await?;
    done.output.extend(super::log_of(&out));
    // Every listed package is looked at afterwards, not only the chosen
    // ones: a dependency may have come along, and the record must say so.
    let listed: Vec<String> = upgrades.iter().map(|u| u.name.clone()).collect();
    let after = installed(host, manager, &listed).await?;
    done.updated = upgrades
        .iter()
        .map(|u| upgraded(u, after.get(&u.name).cloned()))
        .filter(|u| u.to != u.from)
        .collect();
    done.changed = !done.updated.is_empty();
    record_changes(host, &done.updated).await;
    let remaining = list(host, manager, limit).await?;
    record_state(host, &remaining).await;
    let reboot = super::reboot::required(host).await?;
    record_reboot(host, reboot.as_deref()).await;
    done.reboot_required = reboot.is_some();
    let missing: Vec<String> = chosen
        .iter()
        .filter(|u| after.get(&u.name) != Some(&u.to))
        .map(|u| u.name.clone())
        .collect();
    if !out.status.success() || !missing.is_empty() {
        done.exit = Some(out.status.clone());
        fell_short(&mut done, &out.status, missing, chosen.len());
        return Ok(done);
    }
    done.exit = Some(out.status);
    done.summary = format!(
        "{} upgraded{}",
        done.updated.len(),
        if done.reboot_required {
            ", reboot required"
        } else {
            ""
        }
    );
    Ok(done)
}

/// Holds the packages the policy holds in the package manager too, so no
/// upgrade of another package drags them along.
async fn hold(
    host: &HostRun<'_>,
    manager: Manager,
    left: &[(Upgrade, &'static str)],
    limit: Duration,
    done: &mut Done,
) -> Result<(), StepError> {
    let held: Vec<String> = left
        .iter()
        .filter(|(_, why)| *why == "held")
        .map(|(u, _)| u.name.clone())
        .collect();
    let Some(line) = manager.hold(&held).filter(|_| !held.is_empty()) else {
        return Ok(());
    };
    let out = super::exec(host, &super::command(host, line, limit)).await?;
    done.output.extend(super::log_of(&out));
    if out.status.success() {
        done.say(format!("held in the package manager: {}", held.join(", ")));
        Ok(())
    } else {
        Err(StepError::new(
            "update_failed",
            format!(
                "holding {} failed ({}); nothing was upgraded",
                held.join(", "),
                out.status
            ),
        ))
    }
}

async fn detect(host: &HostRun<'_>) -> Result<Manager, StepError> {
    let probe = super::command(host, packages::DETECT, Duration::from_secs(60)).become_root(false);
    let out = super::exec(host, &probe).await?;
    packages::parse_detect(&out.stdout.text()).ok_or_else(|| {
        StepError::new(
            "update_failed",
            "no supported package manager found (apt-get, dnf, zypper or apk)",
        )
    })
}

async fn list(
    host: &HostRun<'_>,
    manager: Manager,
    limit: Duration,
) -> Result<Vec<Upgrade>, StepError> {
    let command = super::command(host, manager.list_upgrades(), limit);
    let (stdout, out) = super::read_all(host, &command).await?;
    // dnf check-update exits 100 when it lists updates.
    let listed = out.status.success()
        || (manager == Manager::Dnf && out.status == nightshift_transport::ExitStatus::Code(100));
    if !listed {
        return Err(StepError::new(
            "update_failed",
            format!(
                "listing upgrades failed ({}): {}",
                out.status,
                out.stderr.text().trim()
            ),
        ));
    }
    manager
        .parse_upgrades(&String::from_utf8_lossy(&stdout))
        .map_err(|err| StepError::new("update_failed", err.to_string()))
}

async fn installed(
    host: &HostRun<'_>,
    manager: Manager,
    names: &[String],
) -> Result<std::collections::BTreeMap<String, String>, StepError> {
    let command =
        super::command(host, manager.installed(names), Duration::from_secs(120)).become_root(false);
    let (stdout, _) = super::read_all(host, &command).await?;
    manager
        .parse_installed(&String::from_utf8_lossy(&stdout))
        .map_err(|err| StepError::new("update_failed", err.to_string()))
}

fn upgraded(up: &Upgrade, to: Option<String>) -> PackageChange {
    PackageChange {
        name: up.name.clone(),
        from: up.from.clone(),
        to,
        security: up.security,
    }
}

fn describe(up: &Upgrade) -> String {
    format!(
        "{} {} → {}{}",
        up.name,
        up.from.as_deref().unwrap_or("(new)"),
        up.to,
        if up.security { " (security)" } else { "" }
    )
}

/// What check mode reports for the upgrades the policy selects: the count
/// in the summary, every name in `listed`, each package with its versions
/// in the output, and the names once more as its last line, where a
/// recorded step's output tail keeps them.
fn would_upgrade(chosen: &[Upgrade], done: &mut Done) {
    for up in chosen {
        done.say(describe(up));
    }
    let names: Vec<String> = chosen.iter().map(|u| u.name.clone()).collect();
    done.say(format!("would upgrade: {}", names.join(", ")));
    done.summary = format!("would upgrade {}", count(chosen));
    done.listed = names;
    done.skipped = true;
    done.would_update = chosen
        .iter()
        .map(|u| upgraded(u, Some(u.to.clone())))
        .collect();
}

/// "136 packages (12 security)"
fn count(upgrades: &[Upgrade]) -> String {
    let security = upgrades.iter().filter(|u| u.security).count();
    match upgrades.len() {
        1 => format!("1 package ({security} security)"),
        n => format!("{n} packages ({security} security)"),
    }
}

/// Fails an upgrade that exited with an error or left some of the chosen
/// packages at their old version: the names go to `listed` and, as the
/// last line, to the output.
fn fell_short(
    done: &mut Done,
    status: &nightshift_transport::ExitStatus,
    missing: Vec<String>,
    chosen: usize,
) {
    let upgraded = done.updated.len();
    let message = if missing.is_empty() {
        format!("{status} (see the output); {upgraded} of {chosen} upgraded")
    } else {
        done.say(format!("not at the new version: {}", missing.join(", ")));
        format!(
            "{status}; {upgraded} of {chosen} upgraded, {} not at the new version",
            missing.len()
        )
    };
    done.listed = missing;
    done.failing(StepError::new("update_failed", message));
}

async fn record_state(host: &HostRun<'_>, upgrades: &[Upgrade]) {
    let state: Vec<PackageState> = upgrades
        .iter()
        .map(|u| PackageState {
            name: u.name.clone(),
            installed: u.from.clone(),
            upgradable: Some(u.to.clone()),
            security: u.security,
        })
        .collect();
    host.env
        .record("packages", |c| {
            c.record_packages(host.name(), &state, Utc::now())
        })
        .await;
}

async fn record_changes(host: &HostRun<'_>, changes: &[PackageChange]) {
    let Some(job) = host.job else { return };
    host.env
        .record("package changes", |c| {
            c.record_package_changes(job, host.name(), changes, Utc::now())
        })
        .await;
}

pub(super) async fn record_reboot(host: &HostRun<'_>, reason: Option<&str>) {
    host.env
        .record("the reboot state", |c| {
            c.set_reboot_required(host.name(), reason, Utc::now())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrades(count: usize) -> Vec<Upgrade> {
        (0..count)
            .map(|i| Upgrade {
                name: format!("pkg{i:03}"),
                arch: Some("amd64".into()),
                from: Some("1.0".into()),
                to: "1.1".into(),
                security: i % 10 == 0,
                origin: "bookworm".into(),
            })
            .collect()
    }

    #[test]
    fn a_check_counts_in_its_summary_and_lists_every_package_apart() {
        let chosen = upgrades(150);
        let mut done = Done::default();
        would_upgrade(&chosen, &mut done);
        assert_eq!(done.summary, "would upgrade 150 packages (15 security)");
        assert_eq!(done.listed.len(), 150);
        assert_eq!(done.listed[149], "pkg149");
        assert!(done.skipped && !done.changed);
        assert!(done.updated.is_empty(), "nothing was upgraded");
        assert_eq!(done.would_update.len(), 150);
        assert_eq!(done.would_update[0].to.as_deref(), Some("1.1"));
        let output = String::from_utf8_lossy(&done.output);
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[0], "pkg000 1.0 → 1.1 (security)");
        assert_eq!(lines.len(), 151);
        assert!(
            lines[150].starts_with("would upgrade: pkg000, pkg001, ")
                && lines[150].ends_with(", pkg149"),
            "the last line names them all: {}",
            lines[150]
        );
    }

    #[test]
    fn one_package_is_counted_in_the_singular() {
        let mut done = Done::default();
        would_upgrade(&upgrades(1), &mut done);
        assert_eq!(done.summary, "would upgrade 1 package (1 security)");
    }

    #[test]
    fn packages_left_behind_are_counted_in_the_error_and_listed_apart() {
        let missing: Vec<String> = (0..40).map(|i| format!("pkg{i:03}")).collect();
        let mut done = Done::default();
        let status = nightshift_transport::ExitStatus::Code(100);
        fell_short(&mut done, &status, missing, 136);
        assert!(done.failed);
        assert_eq!(
            done.summary,
            "exit 100; 0 of 136 upgraded, 40 not at the new version"
        );
        assert_eq!(done.listed.len(), 40);
        let output = String::from_utf8_lossy(&done.output);
        assert!(
            output.trim_end().ends_with("pkg038, pkg039"),
            "the output ends with every name: {output}"
        );
    }

    #[test]
    fn a_failed_upgrade_with_every_package_in_place_points_at_its_output() {
        let mut done = Done::default();
        let status = nightshift_transport::ExitStatus::Code(1);
        fell_short(&mut done, &status, Vec::new(), 3);
        assert_eq!(done.summary, "exit 1 (see the output); 0 of 3 upgraded");
        assert!(done.listed.is_empty());
    }
}
