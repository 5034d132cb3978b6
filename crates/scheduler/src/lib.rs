//! When the daemon starts a run, and what it says about the fires it did not
//! start.
//!
//! `nightshift daemon` wakes every few seconds and asks one question per
//! schedule: since I last looked, which fires came due? This crate answers
//! it, and says what a running run must do as its window closes. It is the
//! daemon's decisions without the daemon: no I/O, no SQL, no SSH, and no
//! clock of its own. Time comes in as arguments (the daemon passes a
//! [`Clock`]'s reading), so tests drive weeks of simulated nights through
//! the same code the daemon runs, daylight-saving jumps and a daemon that
//! was down for days included.

mod clock;
mod due;
mod entry;
pub mod moment;
mod phase;

pub use clock::{Clock, ManualClock, SystemClock};
pub use due::{Decision, Fire, LISTED_FIRES, Missed, due, next_fire};
pub use entry::entries;
pub use nightshift_plan::Schedule;
pub use phase::{Phase, phase};

/// The policy for missed fires, as the config and schedules spell it.
pub use nightshift_plan::CatchUp;
