//! Where the store is, where its passphrase comes from, and creating it.
//!
//! The passphrase comes, in order, from `NIGHTSHIFT_PASSPHRASE`, the key
//! file the config names (`[store] key_file`), and the key file nightshift
//! generated under the data dir for a store it created on its own. A new
//! store with none of these gets a generated key file, so nothing prompts;
//! the front end tells the user to keep a copy.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nightshift_engine::rollout::StoreAccess;
use nightshift_store::{Encryption, Passphrase, Store, StoreConfig, StoreError};

use crate::{ControllerError, Settings};

pub const PASSPHRASE_ENV: &str = "NIGHTSHIFT_PASSPHRASE";

/// A store just made, and the key file generated for it, if one was.
#[derive(Debug)]
pub struct NewStore {
    pub store: Store,
    pub generated_key: Option<PathBuf>,
}

impl Settings {
    /// Where the store lives under the data directory.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// The key file nightshift generates for a store it creates on its
    /// own: beside the store, not in it, so a copy of the store alone is
    /// useless.
    pub fn generated_key_file(&self) -> PathBuf {
        self.data_dir.join("store.key")
    }

    /// Whether the data dir holds a store yet.
    pub fn store_exists(&self) -> bool {
        Store::exists(&self.store_dir())
    }

    /// The passphrase from the environment or a key file; `None` when
    /// nothing gives one.
    pub fn configured_passphrase(&self) -> Result<Option<Passphrase>, ControllerError> {
        if let Ok(text) = std::env::var(PASSPHRASE_ENV)
            && !text.is_empty()
        {
            return Ok(Some(Passphrase::new(text)));
        }
        if let Some(path) = &self.config.store.key_file {
            return read_key_file(path).map(Some);
        }
        let generated = self.generated_key_file();
        if generated.exists() {
            return read_key_file(&generated).map(Some);
        }
        Ok(None)
    }

    /// What a run's backup steps need of the store: where it is, and the
    /// passphrase that opens it. A store that exists is only unlocked, so
    /// a wrong passphrase fails before the run starts, and its index is not
    /// read; one that does not exist yet is created. A store whose
    /// passphrase nothing gives is `StoreError::PassphraseNeeded`, for a
    /// front end with a terminal to ask.
    pub fn store_access(&self) -> Result<(StoreAccess, Option<PathBuf>), ControllerError> {
        let root = self.store_dir();
        let generated_key = if Store::exists(&root) {
            None
        } else {
            self.create_store(StoreConfig::new(String::new()))?
                .generated_key
        };
        let configured = self.configured_passphrase()?;
        let store = Store::open_unindexed(&root, configured.as_ref())?;
        let passphrase = match store.config().encryption {
            Encryption::None => None,
            Encryption::XChaCha20Poly1305 => configured,
        };
        Ok((StoreAccess { root, passphrase }, generated_key))
    }

    /// Creates the store; an encrypted one with the configured passphrase,
    /// or with a generated key file when none is configured. Another
    /// command creating the store at the same moment is no error: the
    /// store renamed into place first is the store, and this opens it.
    pub fn create_store(&self, config: StoreConfig) -> Result<NewStore, ControllerError> {
        self.ensure_data_dir()?;
        let root = self.store_dir();
        let (passphrase, generated_key) = match (config.encryption, self.configured_passphrase()?) {
            (Encryption::None, _) => (None, None),
            (_, Some(passphrase)) => (Some(passphrase), None),
            (_, None) => {
                let (passphrase, made) = self.generate_key_file()?;
                (Some(passphrase), made.then(|| self.generated_key_file()))
            }
        };
        let store = match Store::init(&root, config, passphrase.as_ref()) {
            Err(StoreError::AlreadyExists { .. }) => {
                Store::open(&root, self.configured_passphrase()?.as_ref())?
            }
            other => other?,
        };
        Ok(NewStore {
            store,
            generated_key,
        })
    }

    /// A new random passphrase in the data dir's key file, and whether
    /// this call made it. The file is written whole under a private name
    /// and linked into place, which fails if another command linked its own
    /// first: then that one's key is the key.
    fn generate_key_file(&self) -> Result<(Passphrase, bool), ControllerError> {
        let path = self.generated_key_file();
        let passphrase = Passphrase::generate();
        let draft = self
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
        let key_error = |source| ControllerError::MakingKeyFile {
            path: path.clone(),
            source,
        };
        match linked {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok((read_key_file(&path)?, false));
            }
            other => other.map_err(key_error)?,
        }
        std::fs::File::open(&self.data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(key_error)?;
        Ok((passphrase, true))
    }
}

/// The passphrase in a key file: its text up to the line end.
pub fn read_key_file(path: &Path) -> Result<Passphrase, ControllerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ControllerError::KeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(ControllerError::EmptyKeyFile(path.to_path_buf()));
    }
    Ok(Passphrase::new(text))
}
