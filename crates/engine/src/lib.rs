//! Runs playbooks over the fleet.
//!
//! The engine turns a validated plan into work: it splits the target hosts
//! into rollout batches, drives each host's steps through a transport, stops
//! the rollout when too many hosts fail, and emits the events that the
//! catalog records and the CLI renders. It parses no command lines and draws
//! nothing on a terminal.

mod action;
pub mod adhoc;
mod batch;
pub mod event;
mod job;
pub mod launch;
pub mod line;
pub mod packages;
pub mod pull;
pub mod reach;
pub mod restore;
pub mod rollout;
mod step;
pub mod stop;

pub use batch::batches;

/// The catalog's copy of a snapshot's metadata, so reports need not open
/// the store; `job` is the job that made it, when a run did.
pub fn snapshot_row(
    entry: &nightshift_store::SnapshotEntry,
    job: Option<nightshift_catalog::JobId>,
    damaged_paths: Option<u64>,
) -> nightshift_catalog::SnapshotRecord {
    let s = &entry.snapshot;
    nightshift_catalog::SnapshotRecord {
        id: entry.id.clone(),
        host: s.host.clone(),
        time: s.time,
        paths: s.paths.clone(),
        tags: s.tags.clone(),
        parent: s.parent.clone(),
        files: s.summary.files,
        bytes_total: s.summary.bytes_total,
        new_bytes_stored: s.summary.new_bytes_stored,
        job,
        damaged_paths,
    }
}
