//! Crash-safe writes: whole files renamed into place under the store, and
//! the index and snapshot files written that way.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Store, private_dir, unique_name};
use crate::error::{IoContext, Result};
use crate::index::IndexFile;
use crate::pack::PackId;
use crate::snapshot::Snapshot;

impl Store {
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
