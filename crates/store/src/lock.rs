//! Locks that do not outlive their process.
//!
//! Backups, restores, checks and forget take shared locks and never wait
//! for each other. Prune takes a prune lock, which only excludes another
//! prune and whole-store rewrites: it deletes in two phases (FORMAT.md), so
//! it never blocks a backup. Only rebuilding or repairing the index takes
//! an exclusive lock. A lock file records host, pid, time
//! and command. A lock whose process is gone on this host is removed, with
//! a message, by the next command that meets it; one from another host is
//! only ever removed by `nightshift store unlock --all`, as its process
//! cannot be checked from here.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::repo::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Prune,
    Exclusive,
}

impl LockKind {
    fn conflicts(self, other: Self) -> bool {
        matches!(
            (self, other),
            (Self::Exclusive, _) | (_, Self::Exclusive) | (Self::Prune, Self::Prune)
        )
    }
}

/// What a lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub host: String,
    pub pid: u32,
    pub time: DateTime<Utc>,
    pub command: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lock of `{}` (pid {} on {}, since {})",
            match self.kind {
                LockKind::Shared => "shared",
                LockKind::Prune => "prune",
                LockKind::Exclusive => "exclusive",
            },
            self.command,
            self.pid,
            self.host,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

impl LockInfo {
    /// Whether the process is known to be gone: only checkable on this host.
    fn is_stale(&self, here: &str) -> bool {
        !here.is_empty() && self.host == here && !process_alive(self.pid)
    }
}

/// A held lock; the file goes when this is dropped.
#[derive(Debug)]
pub struct Lock {
    pub(crate) path: PathBuf,
    /// Stale locks of dead processes removed on the way in.
    pub cleared: Vec<LockInfo>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Store {
    /// Takes a lock, clearing stale ones; an exclusive lock conflicts with
    /// every other, a shared one only with an exclusive one.
    pub fn lock(&self, kind: LockKind, command: &str) -> Result<Lock> {
        let here = host_name();
        let info = LockInfo {
            kind,
            host: here.clone(),
            pid: std::process::id(),
            time: Utc::now(),
            command: command.into(),
        };
        let name = format!(
            "{}-{}",
            info.time.timestamp_nanos_opt().unwrap_or(0),
            info.pid
        );
        let path = self.root().join("locks").join(&name);
        let bytes = serde_json::to_vec_pretty(&info).expect("a lock serializes");
        self.write_file(&Path::new("locks").join(&name), &bytes)?;
        let mut lock = Lock {
            path,
            cleared: Vec::new(),
        };
        // Written first, checked after: of two processes racing, at least
        // one sees the other and backs off.
        for (other_path, other) in self.locks()? {
            if other_path == lock.path {
                continue;
            }
            if other.is_stale(&here) {
                std::fs::remove_file(&other_path).at("removing the stale lock", &other_path)?;
                lock.cleared.push(other);
            } else if kind.conflicts(other.kind) {
                return Err(StoreError::Locked {
                    by: other.to_string(),
                });
            }
        }
        Ok(lock)
    }

    /// Every lock file and what it says.
    pub fn locks(&self) -> Result<Vec<(PathBuf, LockInfo)>> {
        self.lock_files()?
            .into_iter()
            .map(|(path, info)| match info {
                Ok(info) => Ok((path, info)),
                Err(what) => Err(StoreError::Corrupt {
                    what: format!(
                        "unreadable lock: {what}; `nightshift store unlock --all` removes it"
                    ),
                    path,
                }),
            })
            .collect()
    }

    /// Every lock file and what it says, or why it does not parse.
    fn lock_files(&self) -> Result<Vec<(PathBuf, std::result::Result<LockInfo, String>)>> {
        let dir = self.root().join("locks");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for name in self.list("locks")? {
            let path = dir.join(&name);
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // released while listing
            };
            let info = serde_json::from_slice(&bytes).map_err(|err| err.to_string());
            out.push((path, info));
        }
        Ok(out)
    }

    /// Removes stale locks, or with `all` every lock, unreadable ones
    /// included; returns what went.
    pub fn unlock(&self, all: bool) -> Result<Vec<RemovedLock>> {
        let here = host_name();
        let mut removed = Vec::new();
        for (path, info) in self.lock_files()? {
            let stale = info.as_ref().is_ok_and(|info| info.is_stale(&here));
            if all || stale {
                std::fs::remove_file(&path).at("removing the lock", &path)?;
                removed.push(RemovedLock { path, info });
            }
        }
        Ok(removed)
    }
}

/// A lock [`Store::unlock`] removed: what it said, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedLock {
    pub path: PathBuf,
    pub info: std::result::Result<LockInfo, String>,
}

impl std::fmt::Display for RemovedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.info {
            Ok(info) => write!(f, "{info}"),
            Err(what) => write!(f, "unreadable lock {} ({what})", self.path.display()),
        }
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno != nix::errno::Errno::ESRCH,
    }
}
