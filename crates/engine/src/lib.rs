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
pub mod packages;
pub mod reach;
pub mod rollout;
mod step;

pub use batch::batches;
