//! Reading a store back: its directories, snapshots, chunks and pack
//! headers, and the pack files kept open while reading.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Store;
use crate::ChunkId;
use crate::error::{IoContext, Result, StoreError};
use crate::index::Location;
use crate::pack::{self, HeaderError, PackId, TRAILER_LEN};
use crate::snapshot::SnapshotEntry;
use crate::tree::Tree;

impl Store {
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
