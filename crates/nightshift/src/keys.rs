//! Opening the store from the command line: the passphrase as the
//! controller's settings give it, or asked for on a terminal when nothing
//! does, and the word to keep a copy of a key nightshift generated.

use std::io::IsTerminal;
use std::path::Path;

use nightshift_controller::{ControllerError, NewStore};
use nightshift_engine::rollout::StoreAccess;
use nightshift_store::{Encryption, Lock, LockKind, Passphrase, Store, StoreConfig, StoreError};

use crate::settings::Settings;

pub(crate) fn prompt(text: &str) -> anyhow::Result<Passphrase> {
    Ok(Passphrase::new(rpassword::prompt_password(text)?))
}

/// Opens the store, asking for the passphrase on a terminal if nothing
/// else gives it.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    open_with(settings, Store::open)
}

/// Opens the store without reading its index, for `store repair`.
pub fn open_store_unindexed(settings: &Settings) -> anyhow::Result<Store> {
    open_with(settings, Store::open_unindexed)
}

type Opener = fn(&Path, Option<&Passphrase>) -> Result<Store, StoreError>;

fn open_with(settings: &Settings, open: Opener) -> anyhow::Result<Store> {
    let root = settings.store_dir();
    match open(&root, settings.configured_passphrase()?.as_ref()) {
        Err(StoreError::PassphraseNeeded { .. }) if std::io::stdin().is_terminal() => {
            let passphrase = prompt(&format!("passphrase for the store at {}: ", root.display()))?;
            Ok(open(&root, Some(&passphrase))?)
        }
        other => Ok(other?),
    }
}

/// What a run's backup steps need of the store (see
/// [`Settings::store_access`]), asking for the passphrase on a terminal
/// when nothing else gives it.
pub fn store_access(settings: &Settings) -> anyhow::Result<StoreAccess> {
    match settings.store_access() {
        Ok((access, generated)) => {
            if let Some(key) = generated {
                say_keep_a_copy(settings, &key);
            }
            Ok(access)
        }
        Err(ControllerError::Store(StoreError::PassphraseNeeded { .. }))
            if std::io::stdin().is_terminal() =>
        {
            let root = settings.store_dir();
            let passphrase = prompt(&format!("passphrase for the store at {}: ", root.display()))?;
            let store = Store::open_unindexed(&root, Some(&passphrase))?;
            let passphrase = (store.config().encryption != Encryption::None).then_some(passphrase);
            Ok(StoreAccess { root, passphrase })
        }
        Err(err) => Err(err.into()),
    }
}

/// Takes a lock on the store for `command`, saying which stale locks of
/// dead processes it cleared on the way.
pub fn lock(store: &Store, kind: LockKind, command: &str) -> anyhow::Result<Lock> {
    let lock = store.lock(kind, command)?;
    for stale in &lock.cleared {
        eprintln!("note: removed the {stale}: that process is gone");
    }
    Ok(lock)
}

/// Whether the data dir holds a store yet.
pub fn store_exists(settings: &Settings) -> bool {
    settings.store_exists()
}

/// Opens the store, creating it (encrypted unless `plain`) if there is none.
pub fn open_or_create(settings: &Settings, plain: bool) -> anyhow::Result<Store> {
    if settings.store_exists() {
        return open_store(settings);
    }
    let mut config = StoreConfig::new(String::new());
    if plain {
        config.encryption = Encryption::None;
    }
    create(settings, config)
}

/// Creates the store (see [`Settings::create_store`]), saying where a
/// generated key went.
pub fn create(settings: &Settings, config: StoreConfig) -> anyhow::Result<Store> {
    let NewStore {
        store,
        generated_key,
    } = settings.create_store(config)?;
    if let Some(key) = generated_key {
        say_keep_a_copy(settings, &key);
    }
    Ok(store)
}

fn say_keep_a_copy(settings: &Settings, key: &Path) {
    eprintln!(
        "\nnightshift: created an ENCRYPTED store at {}.\n\
         Its key is in {} (mode 0600). KEEP A COPY somewhere safe and away from\n\
         this machine (`nightshift store key export` prints it): without it, no\n\
         backup in this store can ever be read.\n",
        settings.store_dir().display(),
        key.display()
    );
}
