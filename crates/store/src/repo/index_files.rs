//! The store's index files: loading them into the in-memory index, and
//! indexing the packs no index file names.

use std::fs;

use super::Store;
use crate::ChunkId;
use crate::error::{IoContext, Result, StoreError};
use crate::index::{Index, IndexFile};
use crate::pack::{self, HeaderError, PackId};

impl Store {
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
