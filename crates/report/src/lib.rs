//! The compliance report a manager or an auditor reads: for every host and
//! every policy of `[policy]`, compliant or not, and the evidence — dates,
//! counts, pending updates and the runs to look at.
//!
//! This crate decides and renders; it does not read. The binary gathers
//! the catalog's facts at each moment asked about
//! ([`nightshift_catalog::HostFacts`]) and the fleet from the plan
//! ([`Fleet`]), and [`build`] turns them into a [`Report`], which renders
//! as a terminal table, CSV, JSON or one self-contained HTML file. Keeping
//! the reading out makes every verdict testable on plain values, and the
//! same verdicts feed every format.

mod evaluate;
mod html;
mod model;
mod text;

pub use evaluate::{Evidence, Fleet, build, to_explain};
pub use html::html;
pub use model::{
    Check, HostRow, PendingItem, PolicyFigure, Report, Status, TimeToPatch, TrendPoint,
};
pub use text::{csv, host_table, table};

/// The columns of `--format csv`, in order: one row per host and policy.
/// They are part of the interface: add at the end, never rename.
pub const CSV_COLUMNS: [&str; 12] = [
    "as_of",
    "host",
    "policy",
    "status",
    "reason",
    "last_at",
    "age_days",
    "limit_days",
    "run_id",
    "pending",
    "exception",
    "exception_expires",
];

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write the CSV: {0}")]
    Csv(#[from] ::csv::Error),
}
