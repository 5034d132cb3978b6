//! Repair: what to do once `check --read-data` has found damage.
//!
//! Every pack is read whole. A pack that hashes to its name is sound and
//! indexed from its own header. From a damaged one (a flipped byte, a
//! truncated end) every chunk that still decodes to its id is copied into
//! a new pack, found through the pack's header or, when the header is what
//! was lost, through the old index; the damaged file is moved to
//! `damaged/`, never deleted. The index is rewritten as one file from the
//! sound and new packs, and every snapshot that now misses chunks is
//! recorded as damaged, with the paths it lost, in `state/damaged` (sealed,
//! since paths are private). Nothing that was sound is touched.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::index::{Index, IndexFile};
use crate::lock::Lock;
use crate::pack::{self, Blob, PackId};
use crate::repo::Store;
use crate::snapshot::SnapshotEntry;

const DAMAGED_STATE: &str = "state/damaged";

/// What repair found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub packs_read: usize,
    /// Damaged packs, moved to `damaged/`, and what was wrong with each.
    pub damaged_packs: Vec<(PackId, String)>,
    /// Chunks copied out of damaged packs.
    pub chunks_salvaged: usize,
    /// Chunks of damaged packs that could not be read back.
    pub chunks_lost: usize,
    /// Index files that could not be read (replaced by the new index).
    pub unreadable_index_files: Vec<String>,
    /// Snapshot files that could not be read, moved to `damaged/`.
    pub unreadable_snapshots: Vec<String>,
    /// Snapshots that miss chunks, and the paths affected.
    pub damaged_snapshots: BTreeMap<String, Vec<String>>,
}

/// A snapshot known to be damaged: when repair found it, what it lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    pub found: DateTime<Utc>,
    pub lost: Vec<String>,
}

impl Store {
    /// Repairs the store under `lock`, which must be exclusive.
    pub fn repair(&mut self, _lock: &Lock) -> Result<RepairReport> {
        let mut report = RepairReport::default();
        let hints = self.index_hints(&mut report)?;
        let mut sound = IndexFile::default();
        let mut salvage: Vec<(PackId, Vec<u8>, Vec<Blob>)> = Vec::new();
        for id in self.packs_on_disk()? {
            report.packs_read += 1;
            let path = self.pack_path(id);
            let bytes = fs::read(&path).at("reading", &path)?;
            let header = pack::parse_header(&bytes, bytes.len() as u64, self.crypto());
            match header {
                Ok(blobs) if PackId::of(&bytes) == id => sound.packs.push((id, blobs)),
                header => {
                    let what = match &header {
                        Ok(_) => "its content no longer hashes to its name".to_string(),
                        Err(pack::HeaderError::Damaged(what)) => what.clone(),
                        Err(pack::HeaderError::NeedMore(_)) => "it is truncated".into(),
                    };
                    let blobs = header
                        .ok()
                        .or_else(|| hints.get(&id).cloned())
                        .unwrap_or_default();
                    report.damaged_packs.push((id, what));
                    salvage.push((id, bytes, blobs));
                }
            }
        }
        let copied = self.salvage(&salvage, &mut report)?;
        let copied_ids: Vec<PackId> = copied.packs.iter().map(|(id, _)| *id).collect();
        sound.packs.extend(copied.packs);
        sound.supersedes = self.index_file_names()?;
        self.write_index(&sound)?;
        for name in &sound.supersedes {
            let path = self.root().join("index").join(name);
            fs::remove_file(&path).at("removing", &path)?;
        }
        // In an unencrypted store a salvaged pack can come out byte for
        // byte what the damaged one should have been, under the same name:
        // then the rename has already replaced the damaged file.
        let rewritten: std::collections::HashSet<PackId> = copied_ids.iter().copied().collect();
        for (id, _, _) in salvage.iter().filter(|(id, _, _)| !rewritten.contains(id)) {
            self.quarantine(&self.pack_path(*id), &id.to_string())?;
        }
        self.load_index()?;
        self.record_damage(&mut report)?;
        Ok(report)
    }

    /// The blob lists the readable index files give per pack: the only
    /// map of a pack whose own header was lost.
    fn index_hints(&self, report: &mut RepairReport) -> Result<HashMap<PackId, Vec<Blob>>> {
        let mut hints: HashMap<PackId, Vec<Blob>> = HashMap::new();
        for name in self.index_file_names()? {
            let path = self.root().join("index").join(&name);
            let bytes = fs::read(&path).at("reading", &path)?;
            match IndexFile::decode(&bytes, self.crypto()) {
                Ok(file) => {
                    for (pack, blobs) in file.packs {
                        hints.entry(pack).or_default().extend(blobs);
                    }
                }
                Err(_) => report.unreadable_index_files.push(name),
            }
        }
        Ok(hints)
    }

    /// Copies every chunk of the damaged packs that still decodes to its
    /// id into new packs; returns their index.
    fn salvage(
        &self,
        damaged: &[(PackId, Vec<u8>, Vec<Blob>)],
        report: &mut RepairReport,
    ) -> Result<IndexFile> {
        if damaged.is_empty() {
            return Ok(IndexFile::default());
        }
        let nothing_known = Index::default();
        let (counts, written) = self.with_writer(&nothing_known, 2, |sink| {
            let (mut saved, mut lost) = (0, 0);
            for (_, bytes, blobs) in damaged {
                for blob in blobs {
                    let start = blob.offset as usize;
                    let stored = bytes.get(start..start + blob.stored_len as usize);
                    match stored.map(|s| pack::decode(blob, s, self.crypto())) {
                        Some(Ok(data)) => {
                            sink.put(blob.kind, data, None);
                            saved += 1;
                        }
                        _ => lost += 1,
                    }
                }
            }
            Ok((saved, lost))
        })?;
        (report.chunks_salvaged, report.chunks_lost) = counts;
        if !written.index.packs.is_empty() {
            self.write_index(&written.index)?;
        }
        Ok(written.index)
    }

    /// Moves a damaged file to `damaged/`, where it stays for inspection.
    fn quarantine(&self, path: &Path, name: &str) -> Result<()> {
        let dir = self.root().join("damaged");
        fs::create_dir_all(&dir).at("creating", &dir)?;
        let dest = dir.join(name);
        fs::rename(path, &dest).at("moving to damaged/", path)
    }

    /// Finds the snapshots that miss chunks and records them, with the
    /// paths they lost; moves unreadable snapshot files aside.
    fn record_damage(&self, report: &mut RepairReport) -> Result<()> {
        let mut snapshots = Vec::new();
        for name in self.list("snapshots")? {
            match self.read_snapshot(&name) {
                Ok(entry) => snapshots.push(entry),
                Err(_) => {
                    let path = self.root().join("snapshots").join(&name);
                    self.quarantine(&path, &format!("snapshot-{name}"))?;
                    report.unreadable_snapshots.push(name);
                }
            }
        }
        let mut damage = BTreeMap::new();
        for entry in &snapshots {
            let lost = self.lost_paths(entry);
            if !lost.is_empty() {
                report
                    .damaged_snapshots
                    .insert(entry.id.clone(), lost.clone());
                let found = Utc::now();
                damage.insert(entry.id.clone(), Damage { found, lost });
            }
        }
        self.write_damage(&damage)
    }

    /// Paths of a snapshot whose chunks are not all indexed.
    fn lost_paths(&self, entry: &SnapshotEntry) -> Vec<String> {
        let mut lost = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.walk_needs(entry, &mut seen, &mut |_, path| lost.push(path.to_string()));
        lost.sort();
        lost.dedup();
        lost
    }

    /// Snapshots repair recorded as damaged, by id.
    pub fn damaged_snapshots(&self) -> BTreeMap<String, Damage> {
        fs::read(self.root().join(DAMAGED_STATE))
            .ok()
            .and_then(|bytes| self.crypto().open(&bytes).ok())
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }

    fn write_damage(&self, damage: &BTreeMap<String, Damage>) -> Result<()> {
        let json = serde_json::to_vec(damage).expect("damage serializes");
        self.write_file(Path::new(DAMAGED_STATE), &self.crypto().seal(&json))
    }
}
