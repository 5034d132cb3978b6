use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::command::{Ended, sudo_wants_password};
use crate::output::Lines;
use crate::{Captured, Command, ExitStatus, Output, Reading, Stream, TransportError, Writing};

/// Runs commands on the controller itself through `/bin/sh -c`, as sshd
/// would on a remote host, in a process group of their own so a timeout
/// stops the whole tree.
#[derive(Debug, Clone, Default)]
pub struct Local;

impl Local {
    pub const HOST: &'static str = "localhost";

    pub async fn exec(
        &self,
        command: &Command,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, TransportError> {
        if command.cancel.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Err(command.cut_short(Self::HOST, true));
        }
        let mut child = self.spawn(command)?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.spawn_error(command, "no pipes to the child"));
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let readers = tokio::spawn(read_both(stdout, stderr, tx));
        let mut captured = (Captured::default(), Captured::default());
        let work = async {
            while let Some((stream, line)) = rx.recv().await {
                let target = if stream == Stream::Stdout {
                    &mut captured.0
                } else {
                    &mut captured.1
                };
                target.push(line.as_bytes());
                target.push(b"\n");
                on_line(stream, &line);
            }
            child.wait().await
        };
        let waited = match command.bounded(work).await {
            Ended::Done(waited) => waited,
            how => {
                stop_group(pid, command.become_root).await;
                readers.abort();
                return Err(command.cut_short(Self::HOST, matches!(how, Ended::Cancelled)));
            }
        };
        let status = waited.map_err(|err| self.spawn_error(command, &err.to_string()))?;
        let status = exit_status(status);
        if command.become_root
            && status == ExitStatus::Code(1)
            && sudo_wants_password(&captured.1.text())
        {
            return Err(TransportError::SudoNeedsPassword {
                host: Self::HOST.into(),
            });
        }
        Ok(Output {
            status,
            stdout: captured.0,
            stderr: captured.1,
        })
    }

    /// Starts `command` and hands back its stdout as a reader.
    pub async fn read_stream(&self, command: &Command) -> Result<Reading, TransportError> {
        let mut child = self.spawn_with(command, Stdio::null())?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| self.spawn_error(command, "no stdout pipe"))?;
        Ok(Reading {
            reader: Some(Box::pin(stdout)),
            finish: Box::pin(finish(child, command.become_root)),
        })
    }

    /// Starts `command` and hands back a writer into its stdin.
    pub async fn write_stream(&self, command: &Command) -> Result<Writing, TransportError> {
        let mut child = self.spawn_with(command, Stdio::piped())?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| self.spawn_error(command, "no stdin pipe"))?;
        Ok(Writing::new(
            Box::pin(stdin),
            Box::pin(finish(child, command.become_root)),
        ))
    }

    fn spawn(&self, command: &Command) -> Result<tokio::process::Child, TransportError> {
        self.spawn_with(command, Stdio::null())
    }

    fn spawn_with(
        &self,
        command: &Command,
        stdin: Stdio,
    ) -> Result<tokio::process::Child, TransportError> {
        let mut process = if command.become_root {
            let mut p = tokio::process::Command::new("sudo");
            p.args(["-n", "--", "/bin/sh", "-c"]);
            p
        } else {
            let mut p = tokio::process::Command::new("/bin/sh");
            p.arg("-c");
            p
        };
        process
            .arg(command.inner())
            // nightshift's own secrets are not the command's business.
            .env_remove("NIGHTSHIFT_PASSPHRASE")
            .env_remove("NIGHTSHIFT_NEW_PASSPHRASE")
            .env_remove("NIGHTSHIFT_SSH_PASSPHRASE")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| self.spawn_error(command, &err.to_string()))
    }

    fn spawn_error(&self, command: &Command, reason: &str) -> TransportError {
        TransportError::Spawn {
            host: Self::HOST.into(),
            command: command.shown(),
            reason: reason.to_string(),
        }
    }
}

/// Waits for a streaming child: its stderr, its stdout if nobody read it,
/// and its exit status.
async fn finish(
    mut child: tokio::process::Child,
    become_root: bool,
) -> Result<Output, TransportError> {
    let mut stderr = Captured::default();
    if let Some(mut pipe) = child.stderr.take() {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        stderr.push(&bytes);
    }
    if let Some(mut pipe) = child.stdout.take() {
        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    }
    let status = child.wait().await.map_err(|err| TransportError::Spawn {
        host: Local::HOST.into(),
        command: "stream".into(),
        reason: err.to_string(),
    })?;
    let status = exit_status(status);
    if become_root && status == ExitStatus::Code(1) && sudo_wants_password(&stderr.text()) {
        return Err(TransportError::SudoNeedsPassword {
            host: Local::HOST.into(),
        });
    }
    Ok(Output {
        status,
        stdout: Captured::default(),
        stderr,
    })
}

/// Reads stdout and stderr to the end, sending whole lines as they come.
async fn read_both(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, String)>,
) {
    let out = read_lines(stdout, Stream::Stdout, tx.clone());
    let err = read_lines(stderr, Stream::Stderr, tx);
    tokio::join!(out, err);
}

async fn read_lines(
    mut reader: impl AsyncRead + Unpin,
    stream: Stream,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, String)>,
) {
    let mut lines = Lines::default();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        lines.feed(&buf[..n], |l| {
            let _ = tx.send((stream, l.to_string()));
        });
    }
    lines.finish(|l| {
        let _ = tx.send((stream, l.to_string()));
    });
}

/// Stops a process group: TERM, a second's grace, then KILL.
async fn stop_group(pid: Option<u32>, become_root: bool) {
    let Some(pid) = pid else { return };
    let sudo = if become_root { "sudo -n " } else { "" };
    let script = format!(
        "{sudo}kill -s TERM -- -{pid} 2>/dev/null; sleep 1; {sudo}kill -s KILL -- -{pid} 2>/dev/null; true"
    );
    let _ = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .status()
        .await;
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(signal)) => ExitStatus::Signal(signal_name(signal)),
        (None, None) => ExitStatus::Code(-1),
    }
}

fn signal_name(number: i32) -> String {
    let names = [
        (1, "HUP"),
        (2, "INT"),
        (3, "QUIT"),
        (4, "ILL"),
        (6, "ABRT"),
        (8, "FPE"),
        (9, "KILL"),
        (11, "SEGV"),
        (13, "PIPE"),
        (14, "ALRM"),
        (15, "TERM"),
    ];
    names
        .iter()
        .find(|(n, _)| *n == number)
        .map_or_else(|| number.to_string(), |(_, name)| (*name).to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    async fn run(command: Command) -> (Result<Output, TransportError>, Vec<(Stream, String)>) {
        let mut lines = Vec::new();
        let result = Local
            .exec(&command, &mut |s, l| lines.push((s, l.to_string())))
            .await;
        (result, lines)
    }

    #[tokio::test]
    async fn streams_lines_and_captures_output_and_exit_code() {
        let (out, lines) = run(Command::new("echo out; echo err >&2; exit 3").timeout(LIMIT)).await;
        let out = out.expect("runs");
        assert_eq!(out.status, ExitStatus::Code(3));
        assert_eq!(out.stdout.text(), "out\n");
        assert_eq!(out.stderr.text(), "err\n");
        assert!(lines.contains(&(Stream::Stdout, "out".into())));
        assert!(lines.contains(&(Stream::Stderr, "err".into())));
    }

    #[tokio::test]
    async fn passes_the_environment() {
        let (out, _) =
            run(Command::new("echo \"$GREETING\"").env("GREETING", "it's me", false)).await;
        assert_eq!(out.expect("runs").stdout.text(), "it's me\n");
    }

    #[tokio::test]
    async fn reports_a_signal_by_name() {
        let (out, _) = run(Command::new("kill -TERM $$").timeout(LIMIT)).await;
        assert_eq!(out.expect("runs").status, ExitStatus::Signal("TERM".into()));
    }

    #[tokio::test]
    async fn a_timeout_stops_the_whole_process_tree() {
        // A unique duration names the grandchild, so pgrep finds only ours.
        let marker = format!("sleep 59.{}", std::process::id());
        let started = std::time::Instant::now();
        let command = Command::new(format!("sh -c '{marker}; true' & wait"))
            .timeout(Duration::from_millis(300));
        let (out, _) = run(command).await;
        assert_eq!(out.expect_err("must time out").kind(), "timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
        nightshift_testbed::assert_nothing_left(&marker);
    }

    #[tokio::test]
    async fn cancelling_stops_the_whole_process_tree_and_says_so() {
        let marker = format!("sleep 58.{}", std::process::id());
        let token = tokio_util::sync::CancellationToken::new();
        let command = Command::new(format!("sh -c '{marker}; true' & wait"))
            .timeout(LIMIT)
            .cancel_on(token.clone());
        let started = std::time::Instant::now();
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel();
        });
        let (out, _) = run(command).await;
        cancel.await.expect("cancel task");
        let err = out.expect_err("must be cancelled");
        assert_eq!(err.kind(), "cancelled");
        assert!(err.to_string().contains("was cancelled"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        nightshift_testbed::assert_nothing_left(&marker);
    }
}
