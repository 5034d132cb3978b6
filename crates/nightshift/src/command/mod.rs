//! One module per command: its arguments (a clap type) and its handler.
//! Each handler takes the resolved [`Settings`] and its arguments, calls
//! the libraries, and renders what they return; nothing here is shared
//! between front ends.

pub mod backup;
pub mod catalog;
pub mod check;
pub mod daemon;
pub mod diff;
pub mod exec;
pub mod find;
pub mod forget;
pub mod history;
pub mod hosts;
pub mod ls;
pub mod report;
pub mod restore;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod snapshots;
pub mod status;
pub mod store;
pub mod trigger;

use std::process::ExitCode;

use crate::cli::Command;
use crate::settings::Settings;

/// Hands the command to its handler.
pub fn run(settings: Settings, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        // The daemon keeps its settings, and replaces them on SIGHUP.
        Command::Daemon(args) => daemon::run(settings, &args),
        Command::Check(args) => check::run(&settings, &args),
        Command::Schedule(schedule::ScheduleCommand::Next(args)) => {
            schedule::next(&settings, &args)
        }
        Command::Run(args) => run::run(&settings, &args),
        Command::Exec(args) => exec::run(&settings, &args),
        Command::Hosts(hosts::HostsCommand::List { json }) => hosts::list(&settings, json),
        Command::Hosts(hosts::HostsCommand::Trust { hosts, yes }) => {
            hosts::trust(&settings, &hosts, yes)
        }
        Command::Backup(args) => backup::run(&settings, &args),
        Command::Restore(args) => restore::run(&settings, &args),
        Command::Snapshots(args) => snapshots::run(&settings, &args),
        Command::Ls(args) => ls::run(&settings, &args),
        Command::Find(args) => find::run(&settings, &args),
        Command::Diff(args) => diff::run(&settings, &args),
        Command::Store(command) => store::run(&settings, command),
        Command::Forget(args) => forget::run(&settings, &args),
        Command::Runs(args) => runs::run(&settings, &args),
        Command::History(args) => history::run(&settings, &args),
        Command::Catalog(command) => catalog::run(&settings, command),
        Command::Trigger(args) => trigger::run(&settings, &args),
        Command::Status(args) => status::run(&settings, &args),
        Command::Report(report::ReportCommand::Compliance(args)) => {
            report::compliance(&settings, &args)
        }
        Command::Report(report::ReportCommand::Host(args)) => report::host(&settings, &args),
    }
}
