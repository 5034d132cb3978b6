//! What a sysadmin writes, read without surprises.
//!
//! `plan` owns the configuration file, playbooks and schedules: their types,
//! their TOML form, and the diagnostics that point at the exact file, line
//! and column when something is wrong. It knows nothing of SSH, SQL or
//! storage, so every rule can be tested on strings alone, and `nightshift
//! check` can validate a whole tree before anything touches a host.

mod config;
mod diagnostic;
mod duration;
mod playbook;
mod schedule;
mod tree;

pub use config::{Config, DEFAULT_CONFIG_FILE};
pub use diagnostic::{Diagnostic, Source};
pub use duration::Duration;
pub use playbook::{Playbook, Serial, Step, Threshold};
pub use schedule::{Schedule, ScheduleFile, Window};
pub use tree::{CheckReport, FileKind, check_paths};

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
