//! Everything nightshift does to a host goes through here.
//!
//! A transport runs a command on a host and reports precisely how it ended:
//! an exit code, a signal, a timeout, or a connection that never happened.
//! The local transport serves `localhost` (the embedded default and tests
//! that need no network); the SSH transport on russh serves the fleet with
//! the same interface. Playbooks are not known here.

mod local;

pub use local::Local;

use std::time::Duration;

/// How a command on a host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }
}

/// Why a command could not be run to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot start `{command}` on {host}: {source}")]
    Spawn {
        host: String,
        command: String,
        source: std::io::Error,
    },
    #[error(
        "`{command}` on {host} did not finish within {limit:?}; it was killed (raise the step's timeout if it needs longer)"
    )]
    Timeout {
        host: String,
        command: String,
        limit: Duration,
    },
}

impl TransportError {
    /// A short, stable name for the catalog's `error_kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "spawn",
            Self::Timeout { .. } => "timeout",
        }
    }
}
