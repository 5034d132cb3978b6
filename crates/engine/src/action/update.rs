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
        for up in &chosen {
            done.say(describe(up));
        }
        done.summary = format!("would upgrade {}", names(&chosen));
        done.skipped = true;
        done.updated = chosen
            .iter()
            .map(|u| upgraded(u, Some(u.to.clone())))
            .collect();
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
    let missing: Vec<&str> = chosen
        .iter()
        .filter(|u| after.get(&u.name) != Some(&u.to))
        .map(|u| u.name.as_str())
        .collect();
    if !out.status.success() || !missing.is_empty() {
        done.exit = Some(out.status.clone());
        done.failing(StepError::new(
            "update_failed",
            format!(
                "{} ({}); {} of {} upgraded",
                out.status,
                if missing.is_empty() {
                    "see the output".to_string()
                } else {
                    format!("not at the new version: {}", missing.join(", "))
                },
                done.updated.len(),
                chosen.len()
            ),
        ));
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

fn names(upgrades: &[Upgrade]) -> String {
    let security = upgrades.iter().filter(|u| u.security).count();
    format!(
        "{} packages ({security} security): {}",
        upgrades.len(),
        upgrades.iter().map(describe).collect::<Vec<_>>().join(", ")
    )
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
