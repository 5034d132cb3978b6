//! What a sysadmin writes, read without surprises.
//!
//! `plan` owns the configuration file, playbooks and schedules: their types,
//! their TOML form, and the diagnostics that point at the exact file, line
//! and column when something is wrong. It knows nothing of SSH, SQL or
//! storage, so every rule can be tested on strings alone, and `nightshift
//! check` can validate a whole tree before anything touches a host.

mod config;
pub mod cron;
mod diagnostic;
mod duration;
pub mod inventory;
pub mod next;
mod playbook;
mod schedule;
mod tree;
mod validate;
pub mod window;

pub use validate::{exceptions as check_exceptions, validate};

pub use config::{
    CatalogSettings, CatchUp, Config, DEFAULT_CONFIG_FILE, DaemonSettings, Exception,
    NotifySettings, Policy, PolicySettings, SshSettings, StoreSettings,
};
pub use diagnostic::{Diagnostic, Source};
pub use duration::Duration;
pub use playbook::{
    Backup, Condition, Outcome, Playbook, Reboot, RebootWhen, Serial, Step, Stream, Threshold,
    Update, Verify,
};
pub use schedule::{Freeze, Schedule, ScheduleFile, Window};
pub use tree::{CheckReport, CheckedFile, FileKind, Loaded, Plan, check_paths, load};

/// Why a plan could not be read at all (as opposed to read and found wrong,
/// which is a [`Diagnostic`]).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}
