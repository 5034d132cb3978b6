use std::io;
use std::path::PathBuf;

use crate::ChunkId;

/// Everything that can go wrong in the store. Each message says what was
/// being done, to which file, and what to try next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no store at {path}: run `nightshift store init` or make a first backup")]
    NotAStore { path: PathBuf },

    #[error(
        "the store at {path} is encrypted: give its passphrase in NIGHTSHIFT_PASSPHRASE, name a key file in the config (`[store] key_file`), or run on a terminal to be asked"
    )]
    PassphraseNeeded { path: PathBuf },

    #[error(
        "no key of the store at {path} opens with this passphrase: check it, or try another key file"
    )]
    WrongPassphrase { path: PathBuf },

    #[error("this store is not encrypted: it has no keys")]
    NotEncrypted,

    #[error("no single key id starts with `{0}`: `nightshift store key list` shows them")]
    NoSuchKey(String),

    #[error("refusing to remove the store's last key: without it the store cannot be opened")]
    LastKey,

    #[error(
        "the store is locked: {by}; wait for it to finish, or if that process is gone, `nightshift store unlock --all`"
    )]
    Locked { by: String },

    #[error(
        "prune stopped before changing anything: {what}; run `nightshift store check --read-data`, then `nightshift store repair`"
    )]
    PruneRefused { what: String },

    #[error("a store already exists at {path}")]
    AlreadyExists { path: PathBuf },

    #[error(
        "{path} is not empty but holds no store: move what is in it elsewhere, or point the data dir at an empty folder"
    )]
    NotEmpty { path: PathBuf },

    #[error(
        "the store at {path} says it is not encrypted, but a passphrase or key file is configured for it: its config may have been rewritten to turn encryption off. Nothing was read or written. If you made it unencrypted on purpose, remove the passphrase setting (NIGHTSHIFT_PASSPHRASE, `[store] key_file`, the data dir's store.key); otherwise restore the store from a copy"
    )]
    UnexpectedlyPlain { path: PathBuf },

    #[error(
        "{path} is a store of format version {found}; this nightshift reads version {supported}: upgrade nightshift"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{path}: {what}; the file is damaged: run `nightshift store check`")]
    Corrupt { path: PathBuf, what: String },

    /// The cause is part of the message, not a separate source, so a
    /// report of the whole chain does not say it twice.
    #[error("{action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    #[error(
        "no space left on the disk holding {path} (or its quota is used up): free space, then run the command again"
    )]
    DiskFull { path: PathBuf },

    #[error("chunk {id} is not in the index: run `nightshift store check`")]
    MissingChunk { id: ChunkId },

    #[error(
        "chunk {id} in pack {pack} is damaged ({what}); `nightshift store check --read-data` lists what needs it"
    )]
    BadChunk {
        id: ChunkId,
        pack: String,
        what: String,
    },

    #[error("no snapshot matches `{0}`: `nightshift snapshots` lists them")]
    NoSuchSnapshot(String),

    #[error(
        "`{0}` is not a time; write web1@2026-11-20T03:00 (local time), web1@2026-11-20T03:00:00+01:00, or web1@2026-11-20 (the end of that day)"
    )]
    BadSnapshotTime(String),

    #[error("no snapshot matches `{given}`: {}", match first {
        Some(first) => format!("the first of that host is from {first}"),
        None => "there is none of that host; `nightshift snapshots` lists them".to_string(),
    })]
    NoSnapshotBefore {
        given: String,
        first: Option<String>,
    },

    #[error("`{given}` matches {count} snapshots; give more of the id")]
    AmbiguousSnapshot { given: String, count: usize },

    #[error("`{path}` is not in snapshot {snapshot}: `nightshift ls {snapshot}` shows what is")]
    NoSuchPath { snapshot: String, path: String },

    #[error("refusing to restore `{name}`: it would land outside the target directory")]
    EscapingPath { name: String },

    #[error("tar stream: {0}")]
    Tar(String),

    #[error(
        "file listing: {0}; it must be the unchanged output of the pull's listing command (GNU find): list the host again"
    )]
    Listing(String),

    #[error("invalid setting: {0}")]
    Setting(String),

    #[error(
        "chunk {id} would be {len} bytes, more than a store can index (16 MiB): a directory with this many entries cannot be backed up whole; back up its subdirectories separately or exclude part of it"
    )]
    BlobTooLarge { id: ChunkId, len: u64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches an action and a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|error| {
            let full = [nix::errno::Errno::ENOSPC, nix::errno::Errno::EDQUOT]
                .iter()
                .any(|e| error.raw_os_error() == Some(*e as i32));
            if full {
                StoreError::DiskFull { path: path.into() }
            } else {
                StoreError::Io {
                    action,
                    path: path.into(),
                    error,
                }
            }
        })
    }
}
