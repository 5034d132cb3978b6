//! What a sysadmin writes, read without surprises.
//!
//! `plan` owns the configuration file, the inventory, playbooks and
//! schedules: their TOML form, the diagnostics that point at the exact file,
//! line and column when something is wrong, and the one checked model every
//! command runs on. [`load`] parses and checks in one pass: it yields a
//! [`Plan`] in which every action is an enum, every condition, pattern, cron
//! expression, time zone and window is parsed, and every reference
//! resolves, or it yields every problem. It knows nothing of SSH, SQL or
//! storage, so every rule can be tested on strings alone.

mod check;
mod config;
pub mod cron;
mod diagnostic;
mod duration;
pub mod inventory;
pub mod next;
mod playbook;
mod schedule;
mod tree;
pub mod window;
mod written;

pub use check::{Plan, parse_cron};
pub use config::{
    CatalogSettings, CatchUp, Config, DEFAULT_CONFIG_FILE, DaemonSettings, Exception,
    NotifySettings, Policy, PolicySettings, SshSettings, StoreSettings,
};
pub use diagnostic::{Diagnostic, Source};
pub use duration::Duration;
pub use playbook::{
    Action, Backup, Condition, HealthCheck, Outcome, Playbook, Reboot, RebootWhen, Serial, Step,
    Stream, Threshold, Update, Verify,
};
pub use schedule::{HostWindow, Schedule, Window};
pub use tree::{CheckReport, CheckedFile, FileKind, check_paths, from_sources, load};

/// Why a plan cannot be used: a file could not be read, the config file is
/// wrong, or the plan was read and found wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
    #[error(
        "the plan has {} in {}; nothing was done (`nightshift check` shows the same)",
        count(.0.diagnostics.len(), "problem"),
        count(.0.files_with_errors(), "file")
    )]
    Rejected(Box<CheckReport>),
}

/// `1 file`, `3 files`: a count with its noun, for messages.
pub fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
