//! The terminal table and the CSV.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::NOTHING};

use crate::model::{Check, HostRow, Report, Status};
use crate::{CSV_COLUMNS, ReportError};

/// The summary first (one line per policy), the trend, the time to patch,
/// then every finding: host, policy, reason.
pub fn table(report: &Report, shown: &dyn Fn(DateTime<Utc>) -> String) -> String {
    let mut out = String::new();
    let group = report
        .group
        .as_ref()
        .map(|g| format!(" (group {g})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "fleet {} hosts{group} · as of {}",
        report.hosts_total,
        shown(report.as_of)
    );
    let mut summary = Table::new();
    summary.load_preset(NOTHING);
    for figure in report.policies.iter().chain([&report.overall]) {
        let exempt = if figure.exempt > 0 {
            format!("{} exempt", figure.exempt)
        } else {
            String::new()
        };
        summary.add_row(vec![
            figure.label.clone(),
            format!("{}/{}", figure.compliant, figure.total),
            format!("{:.1}%", figure.percent),
            exempt,
        ]);
    }
    align_numbers(&mut summary);
    let _ = writeln!(out, "{}", trim_lines(&summary.to_string()));
    let trend: Vec<String> = report
        .trend
        .iter()
        .map(|p| format!("{:.0}%", p.overall_percent))
        .collect();
    let _ = writeln!(out, "\ntrend, overall, weekly: {}", trend.join(" "));
    let t = &report.time_to_patch;
    let _ = writeln!(
        out,
        "time to patch, security updates applied since {}: {} within 2 d · {} within 14 d · {} within 30 d · {} longer",
        t.from.format("%Y-%m-%d"),
        t.within_2_days,
        t.within_14_days,
        t.within_30_days,
        t.longer
    );
    let findings = findings(report);
    if findings.is_empty() {
        let _ = writeln!(out, "\nevery host complies with every policy");
    } else {
        let _ = writeln!(out, "\nNOT COMPLIANT");
        let _ = writeln!(out, "{}", trim_lines(&findings.to_string()));
    }
    out
}

fn findings(report: &Report) -> Table {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    for host in &report.hosts {
        for check in host
            .checks
            .iter()
            .filter(|c| c.status == Status::NonCompliant)
        {
            table.add_row(vec![
                host.host.clone(),
                check.policy.name().to_string(),
                with_run(check),
            ]);
        }
    }
    table
}

fn with_run(check: &Check) -> String {
    match check.run {
        Some(run) if !check.reason.contains(&format!("run {run}")) => {
            format!("{} · nightshift runs show {run}", check.reason)
        }
        _ => check.reason.clone(),
    }
}

/// One host's record, every policy with its evidence.
pub fn host_table(
    host: &HostRow,
    report: &Report,
    shown: &dyn Fn(DateTime<Utc>) -> String,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} · {} · as of {}",
        host.host,
        if host.compliant {
            "compliant"
        } else {
            "NOT COMPLIANT"
        },
        shown(report.as_of)
    );
    let mut table = Table::new();
    table.load_preset(NOTHING);
    for check in &host.checks {
        let mut reason = with_run(check);
        if let (Some(why), Some(until)) = (&check.exception, check.exception_expires) {
            let _ = write!(reason, " — exempt until {until}: {why}");
        }
        table.add_row(vec![
            check.policy.name().to_string(),
            check.status.name().replace('_', " "),
            reason,
        ]);
    }
    let _ = writeln!(out, "{}", trim_lines(&table.to_string()));
    let pending: Vec<String> = host
        .checks
        .iter()
        .flat_map(|c| c.pending.iter())
        .map(|p| {
            format!(
                "  {} {} pending {:.0} d (first seen {})",
                p.package,
                p.version,
                p.age_days.floor(),
                p.since.format("%Y-%m-%d")
            )
        })
        .collect();
    if !pending.is_empty() {
        let _ = writeln!(out, "\npending updates\n{}", pending.join("\n"));
    }
    out
}

fn align_numbers(table: &mut Table) {
    for column in [1, 2] {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
}

/// comfy-table's borderless preset pads every line to the full width and
/// starts each with a space; a report reads better without either.
fn trim_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One row per host and policy, with the columns of [`CSV_COLUMNS`].
pub fn csv(report: &Report, out: impl std::io::Write) -> Result<(), ReportError> {
    let mut writer = ::csv::Writer::from_writer(out);
    writer.write_record(CSV_COLUMNS)?;
    let as_of = report
        .as_of
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for host in &report.hosts {
        for c in &host.checks {
            let pending: Vec<String> = c
                .pending
                .iter()
                .map(|p| format!("{} {}", p.package, p.version))
                .collect();
            writer.write_record([
                as_of.clone(),
                host.host.clone(),
                c.policy.name().to_string(),
                c.status.name().to_string(),
                c.reason.clone(),
                c.last_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                c.age_days.map(|d| format!("{d:.2}")).unwrap_or_default(),
                c.limit_days.map(|d| format!("{d:.2}")).unwrap_or_default(),
                c.run.map(|r| r.to_string()).unwrap_or_default(),
                pending.join("; "),
                c.exception.clone().unwrap_or_default(),
                c.exception_expires
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            ])?;
        }
    }
    writer.flush()?;
    Ok(())
}
