//! The actions a step can take. Each gets the host's live connection and
//! the step's time limit, and reports a [`Done`].

mod backup;
mod command;
mod reboot;
mod update;
mod verify;

use std::time::Duration;

use nightshift_plan::{Action, Step};
use nightshift_transport::{Command, Output, Stream};
use tokio::io::AsyncReadExt;

use crate::job::HostRun;
use crate::step::{Done, StepError};

pub async fn run(host: &mut HostRun<'_>, step: &Step, limit: Duration) -> Done {
    match &step.action {
        Action::Command(line) => command::run(host, line, limit).await,
        Action::Update(update) => update::run(host, update, limit).await,
        Action::Backup(backup) => backup::run(host, backup, limit).await,
        Action::Verify(verify) => verify::run(host, verify, limit).await,
        Action::Reboot(reboot) => reboot::run(host, reboot).await,
    }
}

/// A command as the playbook asks for it: through sudo when it says
/// `become`, stopped at `limit` or when the run is cancelled, with
/// `NIGHTSHIFT_HOST` set to the host's inventory name.
pub(crate) fn command(host: &HostRun<'_>, line: impl Into<String>, limit: Duration) -> Command {
    let command = Command::new(line)
        .become_root(host.env.playbook.become_root)
        .env("NIGHTSHIFT_HOST", host.name(), false)
        .cancel_on(host.stop.token());
    if limit == Duration::MAX {
        command
    } else {
        command.timeout(limit)
    }
}

/// Lines of output shown as progress at most this often: a command that
/// prints millions of lines must not cost an event each (its output is
/// kept whole in the step's record anyway).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `command`, sending a line of its output as progress now and then;
/// returns its output.
pub(crate) async fn exec(host: &HostRun<'_>, command: &Command) -> Result<Output, StepError> {
    let conn = host.conn()?;
    let mut shown: Option<std::time::Instant> = None;
    let mut on_line = |_: Stream, text: &str| {
        if shown.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            shown = Some(std::time::Instant::now());
            host.progress(text);
        }
    };
    Ok(conn.exec(command, &mut on_line).await?)
}

/// Runs `command` and returns all of its standard output, however long
/// (exec keeps only the head and tail), for the parsers to read.
pub(crate) async fn read_all(
    host: &HostRun<'_>,
    command: &Command,
) -> Result<(Vec<u8>, Output), StepError> {
    let conn = host.conn()?;
    let mut reading = conn.read_stream(command).await?;
    let mut bytes = Vec::new();
    let read = reading.read_to_end(&mut bytes).await;
    let output = reading.finish().await?;
    if let Err(err) = read {
        return Err(StepError::new(
            "connection_lost",
            format!("reading the output of `{}` failed: {err}", command.line),
        ));
    }
    Ok((bytes, output))
}

/// The log text of a finished command: both streams, bounded.
pub(crate) fn log_of(output: &Output) -> Vec<u8> {
    let mut log = output.stdout.text().into_bytes();
    let err = output.stderr.text();
    if !err.is_empty() {
        if !log.is_empty() && !log.ends_with(b"\n") {
            log.push(b'\n');
        }
        log.extend_from_slice(err.as_bytes());
    }
    log
}
