//! The controller's ground.
//!
//! Every front end (the CLI, the daemon, a later web console) starts from
//! the same place: which configuration applies, where the controller keeps
//! its data (the catalog, the store and its key, the known hosts), and how a
//! run reaches hosts and the store. This crate reads those the same way for
//! all of them, and never asks anyone anything: a front end with a terminal
//! asks for what is missing itself.

mod settings;
mod store;

pub use settings::{ControllerError, Settings, private_data_dir};
pub use store::{NewStore, PASSPHRASE_ENV, read_key_file};
