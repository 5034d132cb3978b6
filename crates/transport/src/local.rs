use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::{ExitStatus, Output, TransportError};

/// Runs commands on the controller itself, through `/bin/sh -c`, exactly as
/// sshd would run them on a remote host.
#[derive(Debug, Clone, Default)]
pub struct Local;

impl Local {
    pub const HOST: &'static str = "localhost";

    /// Runs `command` to completion, or kills it after `limit`.
    pub async fn exec(&self, command: &str, limit: Duration) -> Result<Output, TransportError> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TransportError::Spawn {
                host: Self::HOST.into(),
                command: command.into(),
                source,
            })?;
        let output = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| TransportError::Timeout {
                host: Self::HOST.into(),
                command: command.into(),
                limit,
            })?
            .map_err(|source| TransportError::Spawn {
                host: Self::HOST.into(),
                command: command.into(),
                source,
            })?;
        Ok(Output {
            status: exit_status(output.status),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(signal)) => ExitStatus::Signal(signal),
        (None, None) => ExitStatus::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let out = Local
            .exec("echo out; echo err >&2; exit 3", LIMIT)
            .await
            .expect("runs");
        assert_eq!(out.status, ExitStatus::Code(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn reports_a_signal() {
        let out = Local.exec("kill -TERM $$", LIMIT).await.expect("runs");
        assert_eq!(out.status, ExitStatus::Signal(15));
    }

    #[tokio::test]
    async fn kills_a_command_past_its_limit() {
        let started = std::time::Instant::now();
        let err = Local
            .exec("sleep 30", Duration::from_millis(200))
            .await
            .expect_err("must time out");
        assert_eq!(err.kind(), "timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
