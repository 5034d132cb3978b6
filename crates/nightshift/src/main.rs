//! The `nightshift` command: parses the command line, sets up logging, and
//! hands each subcommand to the crate that does the work. Rendering (text,
//! JSON, progress) lives here; nothing below this crate prints.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line's output is what it prints"
)]

mod cli;
mod command;
mod keys;
mod record;
mod settings;
mod show;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A daemon's log is its record of what it decided: info by default.
    let daemon = u8::from(matches!(cli.command, Command::Daemon(_)));
    init_tracing(cli.global.verbose.saturating_add(daemon), cli.global.quiet);
    match run(cli) {
        Ok(code) => code,
        Err(err) => refuse(&err),
    }
}

/// Says what went wrong. A plan or config with problems is a usage error
/// (status 2), shown as `nightshift check` shows it; anything else is a
/// failure (status 1).
fn refuse(err: &anyhow::Error) -> ExitCode {
    use nightshift_plan::PlanError;
    match err.chain().find_map(|e| e.downcast_ref::<PlanError>()) {
        Some(PlanError::Rejected(report)) => {
            for diagnostic in &report.diagnostics {
                eprintln!("{diagnostic}");
            }
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Some(PlanError::Invalid(diagnostic)) => {
            eprintln!("{diagnostic}");
            eprintln!(
                "error: the config file {} is invalid",
                diagnostic.file.display()
            );
            ExitCode::from(2)
        }
        _ => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = settings::resolve(&cli.global)?;
    tracing::debug!(config = ?settings.config_file, data_dir = %settings.data_dir.display(), "settings");
    command::run(settings, cli.command)
}

/// Who is running nightshift, as the catalog and the audit log record it.
pub fn operator() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn init_tracing(verbose: u8, quiet: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match i16::from(verbose) - i16::from(quiet) {
        ..=-2 => "off",
        -1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("NIGHTSHIFT_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person: a journal or a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
