//! Everything nightshift does to a host goes through here.
//!
//! A transport runs a command on a host and reports precisely how it ended:
//! an exit code, a signal, a timeout, or one of the ways a connection fails.
//! [`Session`] speaks SSH through russh, verifying host keys against
//! OpenSSH `known_hosts` files and never trusting silently; [`Local`] serves
//! `localhost` with the same interface, for the embedded default and for tests
//! that need no network. Playbooks are not known here.

mod command;
mod known_hosts;
mod local;
mod output;
mod ssh;
mod stream;

pub use command::{Command, EnvVar};
pub use known_hosts::{KnownHosts, Verdict, fingerprint, host_key_name, key_type};
pub use local::Local;
pub use output::{Captured, ExitStatus, Output, Stream, shell_quote};
pub use russh::keys::PublicKey;
pub use ssh::{Endpoint, Session, SshConfig, key_is_encrypted, scan_host_keys};
pub use stream::{Reading, Writing};

use std::path::PathBuf;
use std::time::Duration;

/// Why a host could not be reached at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    Refused,
    TimedOut(Duration),
    NameNotResolved,
    Other(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused"),
            Self::TimedOut(limit) => {
                write!(f, "connection timed out after {}s", limit.as_secs_f32())
            }
            Self::NameNotResolved => f.write_str("host name not resolved"),
            Self::Other(reason) => f.write_str(reason),
        }
    }
}

/// Everything that can go wrong between nightshift and a host, typed so
/// the engine can record and count it. No variant carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host} is unreachable: {reason}")]
    Unreachable { host: String, reason: Unreachable },
    #[error(
        "authentication as {user} on {host} failed (tried: {tried}); check the user and the identity file in the inventory, or the keys in ssh-agent"
    )]
    AuthFailed {
        host: String,
        user: String,
        tried: String,
    },
    #[error("cannot use the key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(
        "host key of {host} is not known ({key_type} {fingerprint}); if that is the right key, trust it with `nightshift hosts trust {host}`"
    )]
    HostKeyUnknown {
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error(
        "HOST KEY OF {host} HAS CHANGED: it now presents {key_type} {fingerprint}, unlike {file}:{line}; someone may be intercepting the connection. If the host was reinstalled, remove that line and trust the new key"
    )]
    HostKeyChanged {
        host: String,
        key_type: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },
    #[error("host key of {host} ({fingerprint}) is revoked in {file}:{line}; refusing to connect")]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },
    #[error(
        "sudo on {host} wants a password; nightshift runs `sudo -n` and never types one: allow the command with NOPASSWD in sudoers"
    )]
    SudoNeedsPassword { host: String },
    #[error("`{command}` on {host} failed: {status}")]
    CommandFailed {
        host: String,
        command: String,
        status: ExitStatus,
    },
    #[error(
        "`{command}` on {host} did not finish within {}s; it was stopped (raise the step's timeout if it needs longer)",
        limit.as_secs_f32()
    )]
    Timeout {
        host: String,
        command: String,
        limit: Duration,
    },
    #[error("`{command}` on {host} was stopped before it finished: the run was cancelled")]
    Cancelled { host: String, command: String },
    #[error("connection to {host} was lost while {during}")]
    ConnectionLost { host: String, during: String },
    #[error("cannot start `{command}` on {host}: {reason}")]
    Spawn {
        host: String,
        command: String,
        reason: String,
    },
    #[error("SSH protocol error with {host}: {reason}")]
    Protocol { host: String, reason: String },
}

impl TransportError {
    /// A short, stable name for the catalog's `error_kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::AuthFailed { .. } | Self::Key { .. } => "auth_failed",
            Self::HostKeyUnknown { .. } => "host_key_unknown",
            Self::HostKeyChanged { .. } | Self::HostKeyRevoked { .. } => "host_key_changed",
            Self::SudoNeedsPassword { .. } => "sudo_password",
            Self::CommandFailed { .. } => "command_failed",
            Self::Timeout { .. } => "timeout",
            Self::Cancelled { .. } => "cancelled",
            Self::ConnectionLost { .. } => "connection_lost",
            Self::Spawn { .. } | Self::Protocol { .. } => "protocol",
        }
    }
}

/// A host to run commands on, however it is reached.
#[derive(Debug)]
pub enum Host {
    Local(Local),
    Ssh(Session),
}

impl Host {
    pub fn name(&self) -> &str {
        match self {
            Self::Local(_) => Local::HOST,
            Self::Ssh(session) => session.name(),
        }
    }

    /// Runs `command`, handing each line of output to `on_line` as it
    /// arrives.
    pub async fn exec(
        &self,
        command: &Command,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, TransportError> {
        match self {
            Self::Local(local) => local.exec(command, on_line).await,
            Self::Ssh(session) => session.exec(command, on_line).await,
        }
    }

    /// Starts `command` and hands back its stdout as a reader (a remote
    /// `tar -c` or `cat` for backups).
    pub async fn read_stream(&self, command: &Command) -> Result<Reading, TransportError> {
        match self {
            Self::Local(local) => local.read_stream(command).await,
            Self::Ssh(session) => session.read_stream(command).await,
        }
    }

    /// Starts `command` and hands back a writer into its stdin (a remote
    /// `tar -x` for restores).
    pub async fn write_stream(&self, command: &Command) -> Result<Writing, TransportError> {
        match self {
            Self::Local(local) => local.write_stream(command).await,
            Self::Ssh(session) => session.write_stream(command).await,
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        if let Self::Ssh(session) = self {
            session.close().await;
        }
    }
}
