//! What a rollout is given about its hosts and its store, and what every
//! job of a run shares while it goes.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;

use nightshift_catalog::{Catalog, RunId};
use nightshift_plan::{HostWindow, Playbook};
use nightshift_store::{Passphrase, RetentionPolicy};
use nightshift_transport::SshConfig;
use tokio::sync::mpsc;

use crate::event::Event;
use crate::reach::Reach;
use crate::stop::Stop;

/// A host of the run and what the engine needs to know of it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub reach: Reach,
    /// The address recorded in the catalog.
    pub address: Option<String>,
    /// Its retention policy from the inventory, for `forget = true`.
    pub retention: Option<RetentionPolicy>,
    /// Its own maintenance window, when the run respects it: closed when
    /// its batch comes, the host is deferred.
    pub window: Option<HostWindow>,
}

/// Where backups go.
#[derive(Clone)]
pub struct StoreAccess {
    pub root: PathBuf,
    pub passphrase: Option<Passphrase>,
}

impl std::fmt::Debug for StoreAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAccess")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What every job of a run shares.
#[derive(Debug)]
pub struct Env {
    pub playbook: Playbook,
    pub check: bool,
    pub ssh: SshConfig,
    pub catalog: Option<Catalog>,
    pub store: Option<StoreAccess>,
    pub run: Option<RunId>,
    /// Backups take turns at the store. Two backups running side by side
    /// cannot see each other's new chunks, so the same file on five hosts
    /// would be stored five times; one at a time, it is stored once. Each
    /// backup already uses every core for chunking and compression, so
    /// little is lost, and hosts' other steps still run in parallel.
    pub store_turn: tokio::sync::Mutex<()>,
    pub stop: Stop,
    /// See [`super::Rollout::undone_waits`].
    pub(super) undone_waits: bool,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

impl Env {
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Records `what` with `write`, if there is a catalog. A catalog that
    /// fails to record does not stop maintenance: the failure is logged,
    /// and the result is `None` as without a catalog.
    pub async fn record<'a, T, F, Fut>(&'a self, what: &str, write: F) -> Option<T>
    where
        F: FnOnce(&'a Catalog) -> Fut,
        Fut: Future<Output = Result<T, nightshift_catalog::CatalogError>>,
    {
        match write(self.catalog.as_ref()?).await {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::warn!(%err, "cannot record {what} in the catalog");
                None
            }
        }
    }
}

/// Set once the rollout halts: jobs in flight stop after their step.
#[derive(Debug, Default)]
pub struct Halt(Mutex<Option<String>>);

impl Halt {
    pub fn is_set(&self) -> bool {
        self.0.lock().is_ok_and(|r| r.is_some())
    }

    pub fn reason(&self) -> String {
        self.0
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_default()
    }

    pub(super) fn set(&self, reason: String) -> bool {
        match self.0.lock() {
            Ok(mut slot) if slot.is_none() => {
                *slot = Some(reason);
                true
            }
            _ => false,
        }
    }
}
