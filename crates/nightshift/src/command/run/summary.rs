//! The table at the end of a run, and the line that says how it went.

use comfy_table::{Table, presets};
use indicatif::HumanBytes;
use nightshift_engine::event::{JobReport, RunReport};
use nightshift_engine::line::first_few;
use std::time::Duration;

pub(super) fn print_summary(report: &RunReport, jobs: &[JobReport], check: bool) {
    print!("{}", summary(report, jobs, check));
}

/// The table per host, the closing lines and the commands to try next.
fn summary(report: &RunReport, jobs: &[JobReport], check: bool) -> String {
    // Nothing was upgraded but a check found upgrades: the column says so.
    let would = jobs.iter().all(|j| j.updated.is_empty())
        && jobs.iter().any(|j| !j.would_update.is_empty());
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "HOST",
        "RESULT",
        if would { "WOULD UPDATE" } else { "UPDATED" },
        "REBOOT",
        "BACKUP",
        "TIME",
    ]);
    for job in jobs {
        table.add_row([
            job.host.clone(),
            job.status.to_string(),
            updated(job, would),
            job.reboot
                .map_or("—".into(), |t| format!("yes {}s", t.as_secs())),
            job.backup.as_ref().map_or("—".into(), |b| {
                format!(
                    "{} new, {:.1}s",
                    HumanBytes(b.new_bytes_stored),
                    b.elapsed.as_secs_f64()
                )
            }),
            clock(job.elapsed),
        ]);
    }
    let mut text = String::new();
    for line in table.to_string().lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(&format!("{}\n", closing_line(report)));
    if let Some(line) = would_change(jobs, check) {
        text.push_str(&format!("{line}\n"));
    }
    let next = next_commands(report, jobs);
    if !next.is_empty() {
        text.push_str(&format!("next: {}\n", next.join(" · ")));
    }
    text
}

fn next_commands(report: &RunReport, jobs: &[JobReport]) -> Vec<String> {
    let mut next = Vec::new();
    if let Some(run) = report.run {
        next.push(format!("nightshift runs show {run}"));
    } else if jobs.iter().any(|j| cut_short(&j.would_update)) {
        next.push("--json lists every package".to_string());
    }
    if jobs.iter().any(|j| j.backup.is_some()) {
        next.push("nightshift snapshots".to_string());
    }
    next
}

/// The packages cell: what was upgraded, then what a check would upgrade
/// (said as such unless the whole column is about that).
fn updated(job: &JobReport, would_column: bool) -> String {
    let mut parts = Vec::new();
    if !job.updated.is_empty() {
        parts.push(packages(&job.updated));
    }
    if !job.would_update.is_empty() {
        let would = packages(&job.would_update);
        parts.push(if would_column {
            would
        } else {
            format!("would {would}")
        });
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

/// Room for package names in a table cell, in characters.
const CELL_ROOM: usize = 20;

/// "136 packages (base-files, bash, …)"
fn packages(changes: &[nightshift_engine::event::PackageChange]) -> String {
    let (few, shown) = first_few(&names_of(changes), CELL_ROOM);
    format!(
        "{} package{} ({few}{})",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        if shown < changes.len() { ", …" } else { "" }
    )
}

/// Whether the cell leaves some of the packages out.
fn cut_short(changes: &[nightshift_engine::event::PackageChange]) -> bool {
    first_few(&names_of(changes), CELL_ROOM).1 < changes.len()
}

fn names_of(changes: &[nightshift_engine::event::PackageChange]) -> Vec<&str> {
    changes.iter().map(|c| c.name.as_str()).collect()
}

/// What a check found it would change, in one line: "check mode: nothing
/// changed; would update 136 packages (12 security) on 1 host".
fn would_change(jobs: &[JobReport], check: bool) -> Option<String> {
    let hosts = jobs.iter().filter(|j| !j.would_update.is_empty()).count();
    let packages: Vec<&nightshift_engine::event::PackageChange> =
        jobs.iter().flat_map(|j| &j.would_update).collect();
    let update = format!(
        "would update {} package{} ({} security) on {hosts} host{}",
        packages.len(),
        if packages.len() == 1 { "" } else { "s" },
        packages.iter().filter(|p| p.security).count(),
        if hosts == 1 { "" } else { "s" }
    );
    match (check, hosts) {
        (true, 0) => Some("check mode: nothing changed".into()),
        (true, _) => Some(format!("check mode: nothing changed; {update}")),
        (false, 0) => None,
        (false, _) => Some(format!("{update}: checked, not applied")),
    }
}

fn clock(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// "run 418 halted: 2 failures > max 1 (...) · nightshift runs show 418"
fn closing_line(report: &RunReport) -> String {
    let who = report
        .run
        .map_or_else(|| report.playbook.clone(), |r| format!("run {r}"));
    let what = match &report.halted_because {
        Some(reason) => format!("{}: {reason}", report.status),
        None => format!(
            "{}: {} ok, {} failed{}{} in {}",
            report.status,
            report.ok,
            report.failed,
            if report.deferred > 0 {
                format!(", {} deferred to their window", report.deferred)
            } else {
                String::new()
            },
            if report.skipped > 0 {
                format!(", {} not started", report.skipped)
            } else {
                String::new()
            },
            clock(report.elapsed)
        ),
    };
    format!("{who} {what}")
}

#[cfg(test)]
mod tests {
    use nightshift_catalog::JobStatus;

    use nightshift_catalog::RunStatus;
    use nightshift_engine::event::{BackupReport, PackageChange, StepKind, StepReport, StepStatus};
    use nightshift_engine::line::{LINE_WIDTH, step_line, where_listed};

    use super::*;

    const FIRST: [&str; 6] = [
        "base-files",
        "bash",
        "ca-certificates",
        "libssl3",
        "linux-image-amd64",
        "openssh-client",
    ];

    /// `count` packages as an upgrade lists them, every tenth a security
    /// update.
    fn changes(count: usize) -> Vec<PackageChange> {
        (0..count)
            .map(|i| PackageChange {
                name: FIRST
                    .get(i)
                    .map_or_else(|| format!("libexample{i}"), |n| n.to_string()),
                from: Some("1.0-1".into()),
                to: Some("1.0-1+deb12u1".into()),
                security: i % 10 == 0,
            })
            .collect()
    }

    fn update_step(status: StepStatus, summary: &str, listed: &[PackageChange]) -> StepReport {
        StepReport {
            step: "pending updates".into(),
            kind: StepKind::Update,
            status,
            changed: status == StepStatus::Ok,
            attempts: 1,
            summary: summary.into(),
            listed: listed.iter().map(|p| p.name.clone()).collect(),
            reboot_required: false,
            error_kind: None,
            elapsed: Duration::from_millis(2_140),
        }
    }

    fn job(host: &str, steps: Vec<StepReport>) -> JobReport {
        let mut job = JobReport::new(host, 1, JobStatus::Ok);
        job.steps = steps;
        job.elapsed = Duration::from_secs(75);
        job
    }

    fn report(run: Option<i64>, jobs: &[JobReport]) -> RunReport {
        let failed = jobs.iter().filter(|j| j.failed()).count();
        RunReport {
            run,
            playbook: "web-patch".into(),
            status: if failed == 0 {
                RunStatus::Ok
            } else {
                RunStatus::Failed
            },
            halted_because: None,
            hosts: jobs.len(),
            ok: jobs.len() - failed,
            failed,
            skipped: 0,
            deferred: 0,
            elapsed: Duration::from_secs(81),
        }
    }

    /// What a person reads: the step lines (piped) and the closing table.
    fn shown(run: Option<i64>, jobs: &[JobReport], check: bool) -> String {
        let lists = where_listed(run);
        let mut text = String::new();
        for job in jobs {
            for step in &job.steps {
                text.push_str(&step_line(&job.host, step, Some(&lists)));
                text.push('\n');
            }
        }
        text.push('\n');
        text.push_str(&summary(&report(run, jobs), jobs, check));
        text
    }

    /// A host whose update step, in check mode, found `count` upgrades.
    fn would(host: &str, count: usize) -> JobReport {
        let pending = changes(count);
        let security = pending.iter().filter(|p| p.security).count();
        let summary = format!("would upgrade {count} packages ({security} security)");
        let step = update_step(StepStatus::Skipped, &summary, &pending);
        let mut job = job(host, vec![step]);
        job.would_update = pending;
        job
    }

    /// A host whose update step upgraded `count` packages.
    fn upgraded(host: &str, count: usize, summary: &str) -> JobReport {
        let mut job = job(host, vec![update_step(StepStatus::Ok, summary, &[])]);
        job.updated = changes(count);
        job
    }

    /// A check of two hosts, one with 150 pending packages.
    fn checked() -> Vec<JobReport> {
        vec![would("web1", 150), would("web2", 2)]
    }

    #[test]
    fn a_check_reads_like_a_plan() {
        let text = shown(None, &checked(), true);
        assert!(!text.contains("UPDATED"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_check_step_in_a_recorded_run_points_at_the_record() {
        let mut jobs = checked();
        jobs.truncate(1);
        jobs[0].backup = Some(BackupReport {
            snapshot: "4f1c9a2e".into(),
            files: 212,
            bytes_read: 1_342_177,
            new_bytes_stored: 401_113,
            elapsed: Duration::from_millis(820),
        });
        insta::assert_snapshot!(shown(Some(7), &jobs, false));
    }

    #[test]
    fn a_run_that_upgraded_says_updated() {
        let web1 = upgraded("web1", 150, "150 upgraded");
        let mut web2 = upgraded("web2", 1, "1 upgraded, reboot required");
        web2.reboot = Some(Duration::from_secs(48));
        let mut web3 = job(
            "web3",
            vec![update_step(
                StepStatus::Failed,
                "exit 100; 110 of 150 upgraded, 40 not at the new version",
                &changes(150)[110..],
            )],
        );
        web3.status = JobStatus::Failed;
        web3.updated = changes(110);
        insta::assert_snapshot!(shown(Some(12), &[web1, web2, web3], false));
    }

    #[test]
    fn every_line_fits_a_wide_terminal() {
        for text in [
            shown(None, &checked(), true),
            shown(Some(7), &checked(), false),
        ] {
            for line in text.lines() {
                assert!(line.chars().count() <= LINE_WIDTH, "too long: {line}");
            }
        }
    }
}
