//! One daemon per data directory: `daemon.pid` holds an exclusive `flock`
//! for as long as the daemon lives, and says who it is. The kernel drops
//! the lock when the process dies, however it dies, so a stale file never
//! keeps a new daemon out, and `nightshift status` can tell a live daemon
//! from a leftover file by trying the lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "daemon.pid";

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started: String,
    pub version: String,
    #[serde(default)]
    pub metrics: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another nightshift daemon (pid {pid}, since {started}) runs for this data dir; stop it first, or give this one its own --data-dir"
    )]
    Held { pid: u32, started: String },
    #[error("cannot lock {path}: {source}; check the data directory's permissions")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; dropping it lets go.
#[derive(Debug)]
pub struct DaemonLock {
    _file: Flock<File>,
}

impl DaemonLock {
    pub fn acquire(data_dir: &Path, holder: &Holder) -> Result<Self, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        nightshift_controller::private_data_dir(data_dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let other = read(&path).unwrap_or(Holder {
                    pid: 0,
                    started: "an unknown time".into(),
                    version: String::new(),
                    metrics: None,
                });
                return Err(LockError::Held {
                    pid: other.pid,
                    started: other.started,
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        let text = serde_json::to_string(holder).unwrap_or_default();
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// The daemon running for `data_dir`, if one is: the file names it and
/// its lock is held.
pub fn running(data_dir: &Path) -> Option<Holder> {
    let path = data_dir.join(LOCK_FILE);
    let file = File::open(&path).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We got the lock: nobody holds it, the file is left over.
        Ok(_) => None,
        Err(_) => read(&path),
    }
}

fn read(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            started: "2026-12-01T02:00:00Z".into(),
            version: "test".into(),
            metrics: None,
        }
    }

    #[test]
    fn a_second_daemon_is_refused_and_the_first_is_seen_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(running(dir.path()).is_none());
        let lock = DaemonLock::acquire(dir.path(), &me()).expect("first");
        assert_eq!(running(dir.path()).map(|h| h.pid), Some(std::process::id()));
        let err = DaemonLock::acquire(dir.path(), &me()).expect_err("second");
        assert!(
            err.to_string().contains("another nightshift daemon"),
            "{err}"
        );
        drop(lock);
        assert!(
            running(dir.path()).is_none(),
            "the file is left, the lock is not"
        );
        DaemonLock::acquire(dir.path(), &me()).expect("again after the first let go");
    }
}
