//! A store on disk: its layout, crash-safe writes, and reading chunks back.
//!
//! ```text
//! config                 format version, chunker, compression, pack size (TOML)
//! data/<2 hex>/<pack id> pack files
//! index/<id>             index files, one per backup
//! snapshots/<id>         snapshot files (JSON, sealed), written last
//! keys/<id>              the master key sealed under each passphrase (JSON)
//! locks/<time-pid>       who is using the store (JSON); see `lock.rs`
//! tmp/                   files being written; renamed into place when whole
//! ```

mod index_files;
mod read;
mod write;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Encryption, FORMAT_VERSION, StoreConfig};
use crate::crypto::{Crypto, KeyFile, MasterKey, Passphrase};
use crate::error::{IoContext, Result, StoreError};
use crate::index::Index;
pub use read::PackFiles;
pub(crate) use write::TempFile;

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
    crypto: Crypto,
    master: Option<MasterKey>,
    index: Index,
    /// The index files present when the index was loaded, including any
    /// superseded by another: prune replaces them all.
    index_files: Vec<String>,
}

impl Store {
    /// Whether `root` holds a store.
    pub fn exists(root: &Path) -> bool {
        root.join("config").exists()
    }

    /// Creates an empty store at `root` (the directory may exist if empty).
    /// An encrypted store needs the passphrase of its first key.
    ///
    /// The store is built whole in a private folder beside `root` and
    /// renamed into place, so two processes creating a store at once never
    /// mix their keys and configs: the first rename wins, and the other gets
    /// [`StoreError::AlreadyExists`] and should open the winner's store.
    pub fn init(
        root: &Path,
        mut config: StoreConfig,
        passphrase: Option<&Passphrase>,
    ) -> Result<Self> {
        config.validate()?;
        if Self::exists(root) {
            return Err(StoreError::AlreadyExists { path: root.into() });
        }
        let master = match (config.encryption, passphrase) {
            (Encryption::None, _) => None,
            (_, Some(passphrase)) => Some((MasterKey::generate(), passphrase)),
            (_, None) => return Err(StoreError::PassphraseNeeded { path: root.into() }),
        };
        if config.id.is_empty() {
            config.id = unique_name();
        }
        let building = Building::new(root)?;
        let mut store = Self {
            root: building.path.clone(),
            crypto: master
                .as_ref()
                .map_or(Crypto::None, |(key, _)| Crypto::sealed(key)),
            master: master.as_ref().map(|(key, _)| key.clone()),
            config,
            index: Index::default(),
            index_files: Vec::new(),
        };
        for dir in STORE_DIRS {
            private_dir(&store.root.join(dir))?;
        }
        if let Some((key, passphrase)) = &master {
            store.add_key(passphrase)?;
            store.config.authentication = Some(store.config.authentication_tag(key));
        }
        let text = toml::to_string(&store.config).expect("the config serializes");
        store.write_file(Path::new("config"), text.as_bytes())?;
        building.finish(root)?;
        store.root = root.into();
        Ok(store)
    }

    /// Opens a store; an encrypted one with the passphrase of any of its keys.
    pub fn open(root: &Path, passphrase: Option<&Passphrase>) -> Result<Self> {
        let mut store = Self::open_unindexed(root, passphrase)?;
        store.load_index()?;
        Ok(store)
    }

    /// Opens a store without reading its index, which may be what is
    /// damaged: for [`Store::repair`] alone.
    pub fn open_unindexed(root: &Path, passphrase: Option<&Passphrase>) -> Result<Self> {
        let config_path = root.join("config");
        let text = match fs::read_to_string(&config_path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore { path: root.into() });
            }
            other => other.at("reading", &config_path)?,
        };
        let config: StoreConfig = toml::from_str(&text).map_err(|err| StoreError::Corrupt {
            path: config_path.clone(),
            what: err.message().to_string(),
        })?;
        if config.version != FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                path: root.into(),
                found: config.version,
                supported: FORMAT_VERSION,
            });
        }
        config.validate()?;
        let mut store = Self {
            root: root.into(),
            config,
            crypto: Crypto::None,
            master: None,
            index: Index::default(),
            index_files: Vec::new(),
        };
        if store.config.encryption == Encryption::None && !store.keys()?.is_empty() {
            return Err(StoreError::Corrupt {
                path: config_path,
                what: "it says the store is unencrypted, but the store has keys: the config was changed; restore `encryption = \"xchacha20-poly1305\"`".into(),
            });
        }
        match (store.config.encryption, passphrase) {
            (Encryption::None, None) => {}
            (Encryption::None, Some(_)) => {
                return Err(StoreError::UnexpectedlyPlain { path: root.into() });
            }
            (_, None) => return Err(StoreError::PassphraseNeeded { path: root.into() }),
            (_, Some(passphrase)) => {
                let master = store
                    .keys()?
                    .into_iter()
                    .find_map(|(_, key)| key.unwrap(passphrase))
                    .ok_or_else(|| StoreError::WrongPassphrase { path: root.into() })?;
                store.authenticate_config(&master)?;
                store.crypto = Crypto::sealed(&master);
                store.master = Some(master);
            }
        }
        Ok(store)
    }

    /// Checks the config's tag under the master key: chunker, compression
    /// and pack settings are what an attacker with write access would
    /// change. A store made before configs carried a tag gets one now.
    fn authenticate_config(&mut self, master: &MasterKey) -> Result<()> {
        let tag = self.config.authentication_tag(master);
        match &self.config.authentication {
            Some(found) if *found == tag => Ok(()),
            Some(_) => Err(StoreError::Corrupt {
                path: self.root.join("config"),
                what: "it fails authentication under the store's key: it was changed since the store was made; put back the original config from a copy".into(),
            }),
            None => {
                self.config.authentication = Some(tag);
                let text = toml::to_string(&self.config).expect("the config serializes");
                self.write_file(Path::new("config"), text.as_bytes())?;
                tracing::info!(store = %self.root.display(), "the store's config is now authenticated under its key");
                Ok(())
            }
        }
    }

    /// The store's key files, by id.
    pub fn keys(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut keys = Vec::new();
        for id in self.list("keys")? {
            let path = self.root.join("keys").join(&id);
            let bytes = fs::read(&path).at("reading", &path)?;
            match serde_json::from_slice::<KeyFile>(&bytes) {
                Ok(key) => match key.kdf.out_of_bounds() {
                    None => keys.push((id, key)),
                    Some(why) => {
                        tracing::warn!(path = %path.display(), %why, "skipping a key file")
                    }
                },
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "skipping an unreadable key file")
                }
            }
        }
        Ok(keys)
    }

    /// Seals the master key under one more passphrase; returns the key's id.
    pub fn add_key(&self, passphrase: &Passphrase) -> Result<String> {
        let master = self.master.as_ref().ok_or(StoreError::NotEncrypted)?;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let key = KeyFile::wrap(master, passphrase, &host);
        let bytes = serde_json::to_vec_pretty(&key).expect("a key serializes");
        let id = blake3::hash(&bytes).to_hex().to_string();
        self.write_file(&Path::new("keys").join(&id), &bytes)?;
        Ok(id)
    }

    /// Removes the key whose id starts with `prefix`; the last key stays.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let keys = self.keys()?;
        let matching: Vec<_> = keys
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        let [(id, _)] = matching.as_slice() else {
            return Err(StoreError::NoSuchKey(prefix.into()));
        };
        if keys.len() == 1 {
            return Err(StoreError::LastKey);
        }
        let path = self.root.join("keys").join(id);
        fs::remove_file(&path).at("removing", &path)?;
        Ok(id.clone())
    }

    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) fn index_mut(&mut self) -> &mut Index {
        &mut self.index
    }
}

/// The folders of a store, created with it.
const STORE_DIRS: [&str; 6] = ["data", "index", "snapshots", "tmp", "keys", "locks"];

/// Creates `path` readable by its owner alone, whatever the umask: a
/// store holds a whole fleet's files.
pub(crate) fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other.at("creating", path),
    }
}

/// A store being created, in a private folder beside its final place;
/// removed if it is never renamed there.
struct Building {
    path: PathBuf,
}

impl Building {
    fn new(root: &Path) -> Result<Self> {
        let parent = root.parent().unwrap_or(Path::new("."));
        let name = root
            .file_name()
            .map_or("store".into(), |n| n.to_string_lossy().into_owned());
        let path = parent.join(format!(".{name}.creating-{}", unique_name()));
        private_dir(&path)?;
        Ok(Self { path })
    }

    /// Renames the finished store to `root`, which may be missing or an
    /// empty folder; a store found there already is the other creator's.
    fn finish(self, root: &Path) -> Result<()> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .at("syncing", &self.path)?;
        match fs::rename(&self.path, root) {
            Ok(()) => {}
            Err(_) if Store::exists(root) => {
                return Err(StoreError::AlreadyExists { path: root.into() });
            }
            Err(err)
                if err.raw_os_error() == Some(nix::libc::ENOTEMPTY)
                    || err.raw_os_error() == Some(nix::libc::EEXIST) =>
            {
                return Err(StoreError::NotEmpty { path: root.into() });
            }
            Err(err) => return Err(err).at("renaming into place", root),
        }
        std::mem::forget(self);
        let parent = root.parent().unwrap_or(Path::new("."));
        File::open(parent)
            .and_then(|d| d.sync_all())
            .at("syncing", parent)
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A name no other process or thread will pick: time, process and a counter.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    blake3::hash(seed.as_bytes()).to_hex()[..32].to_string()
}
