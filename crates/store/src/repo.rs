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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ChunkId;
use crate::config::{Encryption, FORMAT_VERSION, StoreConfig};
use crate::crypto::{Crypto, KeyFile, MasterKey, Passphrase};
use crate::error::{IoContext, Result, StoreError};
use crate::index::{Index, IndexFile, Location};
use crate::pack::{self, HeaderError, PackId, TRAILER_LEN};
use crate::snapshot::{Snapshot, SnapshotEntry};
use crate::tree::Tree;

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

    /// Reads the index files one at a time into the in-memory index, so
    /// only one decoded file is held besides the index itself. Files that
    /// another file supersedes (left by a prune that was interrupted) are
    /// skipped; finding one costs a second pass, which only happens then.
    pub(crate) fn load_index(&mut self) -> Result<()> {
        let mut names = self.index_file_names()?;
        let mut skip = std::collections::HashSet::new();
        loop {
            let mut index = Index::default();
            let mut superseded = std::collections::HashSet::new();
            let mut vanished = false;
            for name in names.iter().filter(|n| !skip.contains(*n)) {
                let path = self.root.join("index").join(name);
                // A prune removes the files it superseded after writing
                // the one that replaces them: list again.
                let bytes = match fs::read(&path) {
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        vanished = true;
                        break;
                    }
                    other => other.at("reading", &path)?,
                };
                let file = IndexFile::decode(&bytes, &self.crypto)
                    .map_err(|what| StoreError::Corrupt { path, what })?;
                superseded.extend(file.supersedes.iter().cloned());
                index.extend(file);
            }
            if vanished {
                names = self.index_file_names()?;
                skip.clear();
                continue;
            }
            if names
                .iter()
                .any(|n| superseded.contains(n) && !skip.contains(n))
            {
                skip = superseded;
                continue;
            }
            index.seal();
            self.index = index;
            self.index_files = names;
            return Ok(());
        }
    }

    /// Reloads the index if its files changed since it was loaded. A
    /// backup calls this after taking its lock, so what it deduplicates
    /// against is never older than its lock (see prune in FORMAT.md).
    pub(crate) fn refresh_index(&mut self) -> Result<()> {
        let names = self.index_file_names()?;
        if names != self.index_files {
            self.load_index()?;
        }
        Ok(())
    }

    /// Names of the files in `index/` that are index files (named by hash).
    pub(crate) fn index_file_names(&self) -> Result<Vec<String>> {
        let mut names = self.list("index")?;
        names.retain(|name| name.parse::<ChunkId>().is_ok());
        Ok(names)
    }

    pub(crate) fn index_files(&self) -> &[String] {
        &self.index_files
    }

    /// File names in one of the store's directories, sorted.
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<String>> {
        let path = self.root.join(dir);
        let mut names = Vec::new();
        for entry in fs::read_dir(&path).at("listing", &path)? {
            let entry = entry.at("listing", &path)?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn pack_path(&self, id: PackId) -> PathBuf {
        let hex = id.to_string();
        self.root.join("data").join(&hex[..2]).join(hex)
    }

    /// Every pack file present, whether indexed or not.
    pub fn packs_on_disk(&self) -> Result<Vec<PackId>> {
        let mut packs = Vec::new();
        for dir in self.list("data")? {
            let path = self.root.join("data").join(&dir);
            if !path.is_dir() {
                continue; // not a pack directory (an editor's or OS's file)
            }
            for entry in fs::read_dir(&path).at("listing", &path)? {
                let entry = entry.at("listing", &path)?;
                if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    packs.push(id);
                }
            }
        }
        packs.sort();
        Ok(packs)
    }

    /// Writes `bytes` under `relative` without ever showing a partial file:
    /// a temporary file is written, fsynced and renamed, then the directory
    /// is fsynced so the rename itself survives a crash.
    pub(crate) fn write_file(&self, relative: &Path, bytes: &[u8]) -> Result<()> {
        let (tmp, mut file) = self.temp_file()?;
        file.write_all(bytes).at("writing", tmp.path())?;
        self.install(tmp, &file, relative)
    }

    /// A new file under `tmp/`, to be [`Store::install`]ed when whole; it
    /// is removed if it never is (a killed process leaves it to prune).
    pub(crate) fn temp_file(&self) -> Result<(TempFile, File)> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.join("tmp").join(unique_name());
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at("creating", &path)?;
        Ok((TempFile { path }, file))
    }

    /// Fsyncs a finished temporary file and renames it to `relative`.
    pub(crate) fn install(&self, tmp: TempFile, file: &File, relative: &Path) -> Result<()> {
        file.sync_all().at("syncing", tmp.path())?;
        let dest = self.root.join(relative);
        let dir = dest.parent().expect("store files live in a directory");
        let new_dir = !dir.exists();
        if new_dir {
            private_dir(dir)?;
        }
        fs::rename(tmp.path(), &dest).at("renaming into place", &dest)?;
        std::mem::forget(tmp);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .at("syncing", dir)?;
        // A new `data/xx/` survives a crash only once its parent is synced.
        if new_dir && let Some(parent) = dir.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .at("syncing", parent)?;
        }
        Ok(())
    }

    pub(crate) fn pack_relative(id: PackId) -> PathBuf {
        let hex = id.to_string();
        Path::new("data").join(&hex[..2]).join(hex)
    }

    /// Writes an index file; returns its name.
    pub(crate) fn write_index(&self, file: &IndexFile) -> Result<String> {
        let bytes = file.encode(&self.crypto);
        let name = blake3::hash(&bytes).to_hex().to_string();
        self.write_file(&Path::new("index").join(&name), &bytes)?;
        Ok(name)
    }

    pub(crate) fn write_snapshot(&self, snapshot: &Snapshot) -> Result<String> {
        let json = serde_json::to_vec_pretty(snapshot).expect("a snapshot serializes");
        let bytes = self.crypto.seal(&json);
        let id = blake3::hash(&bytes).to_hex().to_string();
        self.write_file(&Path::new("snapshots").join(&id), &bytes)?;
        Ok(id)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let mut all = Vec::new();
        for id in self.list("snapshots")? {
            all.push(self.read_snapshot(&id)?);
        }
        all.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Reads and opens one snapshot file.
    pub(crate) fn read_snapshot(&self, id: &str) -> Result<SnapshotEntry> {
        let path = self.root.join("snapshots").join(id);
        let bytes = fs::read(&path).at("reading", &path)?;
        let json = self
            .crypto
            .open(&bytes)
            .map_err(|what| StoreError::Corrupt {
                path: path.clone(),
                what,
            })?;
        let snapshot = serde_json::from_slice(&json).map_err(|err| StoreError::Corrupt {
            path: path.clone(),
            what: err.to_string(),
        })?;
        Ok(SnapshotEntry {
            id: id.to_string(),
            snapshot,
        })
    }

    /// Finds a snapshot by any reference people type (see
    /// [`crate::SnapshotRef`]): an id prefix, `latest`, `HOST/latest`,
    /// `HOST@TIME`.
    pub fn find_snapshot(&self, spec: &str) -> Result<SnapshotEntry> {
        crate::SnapshotRef::parse(spec)?.pick(spec, &self.snapshots()?)
    }

    /// Reads one chunk and checks it against its id.
    pub fn read_chunk(&self, id: ChunkId, packs: &mut PackFiles) -> Result<Vec<u8>> {
        let location = self.index.get(&id).ok_or(StoreError::MissingChunk { id })?;
        self.read_blob(location, packs)
    }

    pub fn read_blob(&self, location: Location, packs: &mut PackFiles) -> Result<Vec<u8>> {
        let path = self.pack_path(location.pack);
        let blob = location.blob;
        let mut stored = vec![0u8; blob.stored_len as usize];
        packs
            .open(location.pack, &path)?
            .read_exact_at(&mut stored, u64::from(blob.offset))
            .at("reading", &path)?;
        pack::decode(&blob, &stored, &self.crypto).map_err(|what| StoreError::BadChunk {
            id: blob.id,
            pack: location.pack.to_string(),
            what,
        })
    }

    /// A chunk's plaintext size, from the index.
    pub fn raw_len(&self, id: ChunkId) -> Result<u64> {
        let location = self.index.get(&id).ok_or(StoreError::MissingChunk { id })?;
        Ok(location.blob.raw_len.into())
    }

    pub fn load_tree(&self, id: ChunkId, packs: &mut PackFiles) -> Result<Tree> {
        let bytes = self.read_chunk(id, packs)?;
        Tree::decode(&bytes).map_err(|what| StoreError::Corrupt {
            path: self.pack_path(
                self.index
                    .get(&id)
                    .map(|l| l.pack)
                    .unwrap_or(PackId([0; 32])),
            ),
            what: format!("chunk {id}: {what}"),
        })
    }

    /// Reads the blob list from a pack file's own header.
    pub fn read_pack_header(&self, id: PackId) -> Result<Vec<pack::Blob>> {
        let path = self.pack_path(id);
        let file = File::open(&path).at("opening", &path)?;
        let len = file.metadata().at("reading", &path)?.len();
        let mut want = TRAILER_LEN + 64 * pack::ENTRY_LEN;
        loop {
            let take = (want as u64).min(len);
            let mut tail = vec![0u8; take as usize];
            file.read_exact_at(&mut tail, len - take)
                .at("reading", &path)?;
            match pack::parse_header(&tail, len, &self.crypto) {
                Ok(blobs) => return Ok(blobs),
                Err(HeaderError::NeedMore(needed))
                    if (needed as u64) <= len && needed > tail.len() =>
                {
                    want = needed;
                }
                Err(HeaderError::NeedMore(_)) => {
                    return Err(StoreError::Corrupt {
                        path,
                        what: "it is shorter than its header says".into(),
                    });
                }
                Err(HeaderError::Damaged(what)) => return Err(StoreError::Corrupt { path, what }),
            }
        }
    }

    /// Packs on disk that no index names (left by a backup that was killed
    /// after writing them, or by a prune killed before deleting them) and
    /// that are whole: the file hashes to its name and its header reads.
    /// The rest are returned with what is wrong, for `check` and `repair`.
    pub(crate) fn unindexed_packs(&self) -> Result<(IndexFile, Vec<(PackId, String)>)> {
        let indexed: std::collections::HashSet<PackId> =
            self.index.packs().iter().copied().collect();
        let mut whole = IndexFile::default();
        let mut damaged = Vec::new();
        for id in self.packs_on_disk()? {
            if indexed.contains(&id) {
                continue;
            }
            let path = self.pack_path(id);
            let bytes = match fs::read(&path) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                other => other.at("reading", &path)?,
            };
            if PackId::of(&bytes) != id {
                damaged.push((id, "its content no longer hashes to its name".into()));
                continue;
            }
            match pack::parse_header(&bytes, bytes.len() as u64, &self.crypto) {
                Ok(blobs) => whole.packs.push((id, blobs)),
                Err(HeaderError::Damaged(what)) => damaged.push((id, what)),
                Err(HeaderError::NeedMore(_)) => damaged.push((id, "it is truncated".into())),
            }
        }
        Ok((whole, damaged))
    }

    /// Indexes the whole packs an interrupted backup left, so the next
    /// backup stores none of their chunks again. Skipped while a prune
    /// runs: a pack prune has just dropped from the index must not come
    /// back under it.
    pub(crate) fn adopt_unindexed_packs(&mut self) -> Result<usize> {
        let pruning = self.locks()?.iter().any(|(_, l)| {
            matches!(
                l.kind,
                crate::lock::LockKind::Prune | crate::lock::LockKind::Exclusive
            )
        });
        if pruning {
            return Ok(0);
        }
        let (whole, _) = self.unindexed_packs()?;
        let count = whole.packs.len();
        if count > 0 {
            self.write_index(&whole)?;
            self.index.merge(whole);
            tracing::info!(packs = count, "indexed the packs of an interrupted backup");
        }
        Ok(count)
    }

    /// Rebuilds the index from the pack headers alone, replacing the index
    /// files. Used when index files are lost or damaged.
    pub fn rebuild_index(&mut self) -> Result<usize> {
        let mut file = IndexFile::default();
        for id in self.packs_on_disk()? {
            file.packs.push((id, self.read_pack_header(id)?));
        }
        let kept = self.write_index(&file)?;
        for name in self.list("index")? {
            if name != kept {
                let path = self.root.join("index").join(&name);
                fs::remove_file(&path).at("removing", &path)?;
            }
        }
        self.load_index()?;
        Ok(self.index.len())
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

/// A file being written under `tmp/`; removed when dropped, so a write
/// that fails (a full disk) leaves no partial file taking space.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Open pack files, kept per thread so reads need no reopening.
#[derive(Debug, Default)]
pub struct PackFiles {
    open: HashMap<PackId, File>,
}

impl PackFiles {
    const LIMIT: usize = 64;

    fn open(&mut self, id: PackId, path: &Path) -> Result<&File> {
        if !self.open.contains_key(&id) {
            if self.open.len() >= Self::LIMIT {
                self.open.clear();
            }
            let file = File::open(path).at("opening", path)?;
            self.open.insert(id, file);
        }
        Ok(&self.open[&id])
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
