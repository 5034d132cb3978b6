use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nightshift_plan::{check_paths, count};

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or directories to check [default: the playbooks and schedules the config names]
    pub paths: Vec<PathBuf>,
    /// Print diagnostics as JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift check`: every problem in one pass, then a one-line verdict.
pub fn run(settings: &Settings, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check_paths(
        &args.paths,
        settings.config_file.as_deref(),
        &settings.config,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for diagnostic in &report.diagnostics {
            eprintln!("{diagnostic}");
        }
        eprintln!("{}", summary(&report));
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(report: &nightshift_plan::CheckReport) -> String {
    let checked = count(report.files.len(), "file");
    match report.diagnostics.len() {
        0 => format!("{checked} checked, no problems"),
        n => format!(
            "{} in {}; {checked} checked",
            count(n, "error"),
            count(report.files_with_errors(), "file")
        ),
    }
}
