//! Where the store's passphrase comes from, and `nightshift store key`.
//!
//! In order: `NIGHTSHIFT_PASSPHRASE`, the key file the config names
//! (`[store] key_file`), the key file nightshift generated under the data
//! dir for a store it created on its own, and last a prompt on a terminal.
//! A new store with none of these gets a generated key file, so the quick
//! start never prompts; the message says to keep a copy.

use crate::settings::Settings;
use anyhow::Context;
use nightshift_engine::rollout::StoreAccess;
use nightshift_store::{Encryption, Lock, LockKind, Passphrase, Store, StoreConfig, StoreError};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const PASSPHRASE_ENV: &str = "NIGHTSHIFT_PASSPHRASE";

/// Where the store lives under the data directory.
pub fn store_dir(settings: &Settings) -> PathBuf {
    settings.data_dir.join("store")
}

/// The key file nightshift generates for a store it creates on its own:
/// beside the store, not in it, so a copy of the store alone is useless.
fn generated_key_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join("store.key")
}

pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<Passphrase> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the store key file {}", path.display()))?;
    let text = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        !text.is_empty(),
        "the store key file {} is empty",
        path.display()
    );
    Ok(Passphrase::new(text))
}

/// The passphrase from the environment or a key file, without prompting.
pub(crate) fn configured(settings: &Settings) -> anyhow::Result<Option<Passphrase>> {
    if let Ok(text) = std::env::var(PASSPHRASE_ENV)
        && !text.is_empty()
    {
        return Ok(Some(Passphrase::new(text)));
    }
    if let Some(path) = &settings.config.store.key_file {
        return read_key_file(path).map(Some);
    }
    let generated = generated_key_file(settings);
    if generated.exists() {
        return read_key_file(&generated).map(Some);
    }
    Ok(None)
}

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
    let root = store_dir(settings);
    match open(&root, configured(settings)?.as_ref()) {
        Err(StoreError::PassphraseNeeded { .. }) if std::io::stdin().is_terminal() => {
            let passphrase = prompt(&format!("passphrase for the store at {}: ", root.display()))?;
            Ok(open(&root, Some(&passphrase))?)
        }
        other => Ok(other?),
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

/// What a run's backup steps need of the store: where it is, and the
/// passphrase that opens it. A store that exists is only unlocked, so a
/// wrong passphrase fails before the run starts, and its index is not
/// read; a store that does not exist yet is created.
pub fn store_access(settings: &Settings) -> anyhow::Result<StoreAccess> {
    let root = store_dir(settings);
    if !Store::exists(&root) {
        create(settings, StoreConfig::new(String::new()))?;
    }
    let configured = configured(settings)?;
    let passphrase = match Store::open_unindexed(&root, configured.as_ref()) {
        Err(StoreError::PassphraseNeeded { .. }) if std::io::stdin().is_terminal() => {
            let passphrase = prompt(&format!("passphrase for the store at {}: ", root.display()))?;
            Store::open_unindexed(&root, Some(&passphrase))?;
            Some(passphrase)
        }
        opened => match opened?.config().encryption {
            Encryption::None => None,
            _ => configured,
        },
    };
    Ok(StoreAccess { root, passphrase })
}

/// Whether the data dir holds a store yet.
pub fn store_exists(settings: &Settings) -> bool {
    Store::exists(&store_dir(settings))
}

/// Opens the store, creating it (encrypted unless `plain`) if there is none.
pub fn open_or_create(settings: &Settings, plain: bool) -> anyhow::Result<Store> {
    if Store::exists(&store_dir(settings)) {
        return open_store(settings);
    }
    let mut config = StoreConfig::new(String::new());
    if plain {
        config.encryption = Encryption::None;
    }
    create(settings, config)
}

/// Creates the store; an encrypted one with the configured passphrase, or
/// with a generated key file when none is configured. Another command
/// creating the store at the same moment is no error: the store that is
/// renamed into place first is the store, and the other opens it.
pub fn create(settings: &Settings, config: StoreConfig) -> anyhow::Result<Store> {
    settings.ensure_data_dir()?;
    let root = store_dir(settings);
    let passphrase = match (config.encryption, configured(settings)?) {
        (Encryption::None, _) => None,
        (_, Some(passphrase)) => Some(passphrase),
        (_, None) => Some(generate_key_file(settings)?),
    };
    match Store::init(&root, config, passphrase.as_ref()) {
        Err(StoreError::AlreadyExists { .. }) => open_store(settings),
        other => Ok(other?),
    }
}

/// A new random passphrase in the data dir's key file. The file is written
/// whole under a private name and linked into place, which fails if another
/// command linked its own first: then that one's key is the key.
fn generate_key_file(settings: &Settings) -> anyhow::Result<Passphrase> {
    let path = generated_key_file(settings);
    let passphrase = Passphrase::generate();
    let draft = settings
        .data_dir
        .join(format!(".store.key.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&draft)
        .and_then(|mut file| {
            writeln!(file, "{}", passphrase.expose())?;
            file.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&draft, &path));
    let _ = std::fs::remove_file(&draft);
    match linked {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return read_key_file(&path);
        }
        other => {
            other.with_context(|| format!("creating the store key file {}", path.display()))?
        }
    }
    std::fs::File::open(&settings.data_dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "\nnightshift: created an ENCRYPTED store at {}.\n\
         Its key is in {} (mode 0600). KEEP A COPY somewhere safe and away from\n\
         this machine (`nightshift store key export` prints it): without it, no\n\
         backup in this store can ever be read.\n",
        store_dir(settings).display(),
        path.display()
    );
    Ok(passphrase)
}
