use std::fmt;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::shell_quote;

/// A command to run on a host, with its environment and limits.
#[derive(Clone, Default)]
pub struct Command {
    pub line: String,
    pub env: Vec<EnvVar>,
    /// Run through `sudo -n`.
    pub become_root: bool,
    pub timeout: Option<Duration>,
    /// Stops the command (its whole process group) when cancelled: a window
    /// that closed, a daemon asked to stop.
    pub cancel: Option<CancellationToken>,
}

/// An environment variable; a secret one is never shown.
#[derive(Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("line", &self.line)
            .field("env", &self.env)
            .field("become_root", &self.become_root)
            .field("timeout", &self.timeout)
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

impl fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.secret {
            "***"
        } else {
            self.value.as_str()
        };
        write!(f, "{}={value}", self.name)
    }
}

/// How a command's run ended.
#[derive(Debug)]
pub(crate) enum Ended<T> {
    Done(T),
    TimedOut,
    Cancelled,
}

/// The marker the remote shell prints first, giving the process group to
/// stop on a timeout.
pub(crate) const PGID_MARKER: &str = "nightshift-pgid:";

impl Command {
    pub fn new(line: impl Into<String>) -> Self {
        Self {
            line: line.into(),
            ..Self::default()
        }
    }

    pub fn become_root(mut self, yes: bool) -> Self {
        self.become_root = yes;
        self
    }

    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Stops the command when `token` is cancelled.
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Runs `work` (the command's I/O) until it ends, its time limit passes,
    /// or it is cancelled, whichever comes first.
    pub(crate) async fn bounded<F: std::future::Future>(&self, work: F) -> Ended<F::Output> {
        let limit = async {
            match self.timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            match &self.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            out = work => Ended::Done(out),
            () = limit => Ended::TimedOut,
            () = cancelled => Ended::Cancelled,
        }
    }

    /// The error for a command that did not end by itself.
    pub(crate) fn cut_short(&self, host: &str, cancelled: bool) -> crate::TransportError {
        match cancelled {
            true => crate::TransportError::Cancelled {
                host: host.to_string(),
                command: self.shown(),
            },
            false => crate::TransportError::Timeout {
                host: host.to_string(),
                command: self.shown(),
                limit: self.timeout.unwrap_or_default(),
            },
        }
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>, secret: bool) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: value.into(),
            secret,
        });
        self
    }

    /// The script run by `/bin/sh -c`: the environment, then the line.
    pub(crate) fn inner(&self) -> String {
        let mut script = String::new();
        for var in &self.env {
            script.push_str(&format!(
                "export {}={}\n",
                var.name,
                shell_quote(&var.value)
            ));
        }
        script.push_str(&self.line);
        script
    }

    /// What sshd runs: report the session's process group, then replace the
    /// login shell with the command (through `sudo -n` when asked), so the
    /// whole tree stays in that group and a timeout can stop all of it.
    pub(crate) fn remote(&self) -> String {
        let sudo = if self.become_root { "sudo -n -- " } else { "" };
        format!(
            "printf '{PGID_MARKER}%s\\n' \"$$\" >&2; exec {sudo}/bin/sh -c {}",
            shell_quote(&self.inner())
        )
    }

    /// A short form for messages: the line, never the environment.
    pub fn shown(&self) -> String {
        let line = self.line.lines().next().unwrap_or("");
        if line.chars().count() > 80 {
            format!("{}…", line.chars().take(80).collect::<String>())
        } else {
            line.to_string()
        }
    }
}

/// Whether stderr says sudo refused to run without a password.
pub(crate) fn sudo_wants_password(stderr: &str) -> bool {
    stderr.contains("sudo: a password is required")
        || stderr.contains("sudo: a terminal is required")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let command = Command::new("deploy")
            .env("TOKEN", "hunter2", true)
            .env("MODE", "fast", false);
        let shown = format!("{command:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("MODE=fast"));
    }
}
