//! Checking a store: structure always (every chunk a snapshot needs is
//! indexed, every index entry matches its pack's own header), contents on
//! request (each pack hashed whole, each chunk decompressed and hashed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::sync::Mutex;
use std::thread;

use crate::ChunkId;
use crate::error::{IoContext, Result};
use crate::index::Location;
use crate::pack::{self, PackId};
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use crate::tree::NodeKind;

#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Share of the store's bytes whose packs are read and hashed: 0.0
    /// reads none, 1.0 all. A subset takes the packs verified longest ago
    /// (or never) first, so repeated subsets cover the whole store.
    pub read_data: f64,
    pub threads: usize,
}

/// One thing wrong with the store, said precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    PackMissing {
        pack: PackId,
    },
    PackHeader {
        pack: PackId,
        what: String,
    },
    PackNotIndexed {
        pack: PackId,
    },
    IndexMismatch {
        pack: PackId,
        chunk: ChunkId,
    },
    ChunkMissing {
        chunk: ChunkId,
        snapshot: String,
        path: String,
    },
    BadChunk {
        chunk: ChunkId,
        pack: PackId,
        what: String,
        /// Every snapshot and file that needs the chunk: (snapshot id, path).
        needed_by: Vec<(String, String)>,
    },
    PackHash {
        pack: PackId,
    },
    /// A snapshot `store repair` found damaged: known, so not an error.
    KnownDamage {
        snapshot: String,
        lost: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::PackMissing { pack } => {
                write!(f, "pack {pack} is in the index but not on disk")
            }
            Problem::PackHeader { pack, what } => write!(f, "pack {pack}: {what}"),
            Problem::PackNotIndexed { pack } => write!(
                f,
                "pack {pack} is on disk but in no index (left by an interrupted backup; harmless)"
            ),
            Problem::IndexMismatch { pack, chunk } => write!(
                f,
                "chunk {chunk}: the index and pack {pack}'s own header disagree"
            ),
            Problem::ChunkMissing {
                chunk,
                snapshot,
                path,
            } => write!(
                f,
                "chunk {chunk} needed by snapshot {} at {path} is in no pack",
                &snapshot[..8.min(snapshot.len())]
            ),
            Problem::BadChunk {
                chunk,
                pack,
                what,
                needed_by,
            } => {
                write!(f, "chunk {chunk} in pack {pack} is damaged: {what}")?;
                for (snapshot, path) in needed_by {
                    write!(
                        f,
                        "\n  needed by snapshot {} at {path}",
                        &snapshot[..8.min(snapshot.len())]
                    )?;
                }
                Ok(())
            }
            Problem::KnownDamage { snapshot, lost } => write!(
                f,
                "snapshot {} lost {lost} paths to damage `store repair` recorded; `nightshift store repair --json` lists them, and `nightshift forget` removes it",
                &snapshot[..8.min(snapshot.len())]
            ),
            Problem::PackHash { pack } => write!(
                f,
                "pack {pack}: its content no longer hashes to its name (bit rot or tampering)"
            ),
        }
    }
}

impl Problem {
    /// Whether the problem means data is lost or at risk, rather than
    /// space is wasted.
    pub fn is_error(&self) -> bool {
        !matches!(
            self,
            Problem::PackNotIndexed { .. } | Problem::KnownDamage { .. }
        )
    }
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub snapshots: usize,
    pub packs: usize,
    pub chunks: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }
}

impl Store {
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        let mut report = CheckReport {
            packs: self.index().packs().len(),
            chunks: self.index().len(),
            ..CheckReport::default()
        };
        let by_pack = self.index_by_pack();
        self.check_packs(&by_pack, &mut report)?;
        let snapshots = self.snapshots()?;
        report.snapshots = snapshots.len();
        self.check_snapshots(&snapshots, &mut report);
        if options.read_data > 0.0 {
            self.read_data(&by_pack, options, &snapshots, &mut report)?;
        }
        Ok(report)
    }

    fn index_by_pack(&self) -> BTreeMap<PackId, Vec<Location>> {
        let mut by_pack: BTreeMap<PackId, Vec<Location>> = BTreeMap::new();
        for location in self.index().iter() {
            by_pack.entry(location.pack).or_default().push(location);
        }
        by_pack
    }

    /// Every indexed pack exists and its header agrees with the index.
    fn check_packs(
        &self,
        by_pack: &BTreeMap<PackId, Vec<Location>>,
        report: &mut CheckReport,
    ) -> Result<()> {
        let on_disk: HashSet<PackId> = self.packs_on_disk()?.into_iter().collect();
        for (&pack, locations) in by_pack {
            if !on_disk.contains(&pack) {
                report.problems.push(Problem::PackMissing { pack });
                continue;
            }
            let header = match self.read_pack_header(pack) {
                Ok(header) => header,
                Err(err) => {
                    report.problems.push(Problem::PackHeader {
                        pack,
                        what: err.to_string(),
                    });
                    continue;
                }
            };
            let header: HashMap<ChunkId, pack::Blob> =
                header.into_iter().map(|b| (b.id, b)).collect();
            for location in locations {
                if header.get(&location.blob.id) != Some(&location.blob) {
                    report.problems.push(Problem::IndexMismatch {
                        pack,
                        chunk: location.blob.id,
                    });
                }
            }
        }
        let indexed: HashSet<PackId> = self.index().packs().iter().copied().collect();
        for &pack in on_disk.difference(&indexed) {
            report.problems.push(Problem::PackNotIndexed { pack });
        }
        Ok(())
    }

    /// Every chunk a snapshot needs, trees and file contents, is indexed.
    fn check_snapshots(&self, snapshots: &[SnapshotEntry], report: &mut CheckReport) {
        let mut seen = HashSet::new();
        let damaged = self.damaged_snapshots();
        for entry in snapshots {
            if let Some(damage) = damaged.get(&entry.id) {
                report.problems.push(Problem::KnownDamage {
                    snapshot: entry.id.clone(),
                    lost: damage.lost.len(),
                });
                continue;
            }
            self.walk_needs(entry, &mut seen, &mut |chunk, path| {
                report.problems.push(Problem::ChunkMissing {
                    chunk,
                    snapshot: entry.id.clone(),
                    path: path.to_string(),
                });
            });
        }
    }

    /// Calls `missing` for each chunk of a snapshot that is not indexed;
    /// trees in `seen` were checked already and are skipped.
    pub(crate) fn walk_needs(
        &self,
        entry: &SnapshotEntry,
        seen: &mut HashSet<ChunkId>,
        missing: &mut dyn FnMut(ChunkId, &str),
    ) {
        let mut packs = PackFiles::default();
        let mut stack = vec![(entry.snapshot.tree, String::new())];
        while let Some((tree_id, path)) = stack.pop() {
            if !seen.insert(tree_id) {
                continue;
            }
            if !self.index().contains(&tree_id) {
                missing(tree_id, if path.is_empty() { "/" } else { &path });
                continue;
            }
            let Ok(tree) = self.load_tree(tree_id, &mut packs) else {
                continue; // reported by the data read, which names the pack
            };
            for node in &tree.nodes {
                let child = format!("{path}/{}", node.name_lossy());
                for &chunk in &node.content {
                    if !self.index().contains(&chunk) {
                        missing(chunk, &child);
                    }
                }
                if let (NodeKind::Dir, Some(subtree)) = (node.kind, node.subtree) {
                    stack.push((subtree, child));
                }
            }
        }
    }

    /// Reads the chosen packs whole: the file must hash to its name and
    /// every chunk must decompress to bytes that hash to its id.
    fn read_data(
        &self,
        by_pack: &BTreeMap<PackId, Vec<Location>>,
        options: &CheckOptions,
        snapshots: &[SnapshotEntry],
        report: &mut CheckReport,
    ) -> Result<()> {
        let chosen = self.rotation(by_pack, options.read_data);
        report.packs_read = chosen.len();
        let next = Mutex::new(chosen.into_iter());
        let found = Mutex::new((Vec::new(), 0u64, Vec::new()));
        let threads = if options.threads == 0 {
            thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            options.threads
        };
        let outcome: Result<()> = thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        loop {
                            let Some((&pack, locations)) =
                                next.lock().expect("not poisoned").next()
                            else {
                                return Ok(());
                            };
                            let path = self.pack_path(pack);
                            let bytes = match fs::read(&path) {
                                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                                other => other.at("reading", &path)?,
                            };
                            let problems = pack_problems(pack, &bytes, locations, self.crypto());
                            let mut found = found.lock().expect("not poisoned");
                            if problems.is_empty() {
                                found.2.push(pack);
                            }
                            found.0.extend(problems);
                            found.1 += bytes.len() as u64;
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().expect("check workers do not panic"))
        });
        outcome?;
        let (mut problems, bytes, sound) = found.into_inner().expect("not poisoned");
        report.bytes_read = bytes;
        self.mark_verified(&sound)?;
        self.name_needers(&mut problems, snapshots);
        report.problems.extend(problems);
        Ok(())
    }

    /// Fills in, for each damaged chunk, every snapshot and file needing it.
    fn name_needers(&self, problems: &mut [Problem], snapshots: &[SnapshotEntry]) {
        let bad: HashSet<ChunkId> = problems
            .iter()
            .filter_map(|p| match p {
                Problem::BadChunk { chunk, .. } => Some(*chunk),
                _ => None,
            })
            .collect();
        if bad.is_empty() {
            return;
        }
        let mut needers: HashMap<ChunkId, Vec<(String, String)>> = HashMap::new();
        for entry in snapshots {
            let mut packs = PackFiles::default();
            let mut stack = vec![(entry.snapshot.tree, String::new())];
            while let Some((tree_id, path)) = stack.pop() {
                if bad.contains(&tree_id) {
                    let at = if path.is_empty() {
                        "/".into()
                    } else {
                        path.clone()
                    };
                    needers
                        .entry(tree_id)
                        .or_default()
                        .push((entry.id.clone(), at));
                    continue;
                }
                let Ok(tree) = self.load_tree(tree_id, &mut packs) else {
                    continue;
                };
                for node in &tree.nodes {
                    let child = format!("{path}/{}", node.name_lossy());
                    for chunk in node.content.iter().filter(|c| bad.contains(c)) {
                        needers
                            .entry(*chunk)
                            .or_default()
                            .push((entry.id.clone(), child.clone()));
                    }
                    if let Some(subtree) = node.subtree {
                        stack.push((subtree, child));
                    }
                }
            }
        }
        for problem in problems {
            if let Problem::BadChunk {
                chunk, needed_by, ..
            } = problem
            {
                let mut found = needers.remove(chunk).unwrap_or_default();
                found.sort();
                found.dedup();
                *needed_by = found;
            }
        }
    }
}

fn pack_problems(
    pack: PackId,
    bytes: &[u8],
    locations: &[Location],
    crypto: &crate::crypto::Crypto,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if PackId::of(bytes) != pack {
        problems.push(Problem::PackHash { pack });
    }
    for location in locations {
        let blob = location.blob;
        let start = blob.offset as usize;
        let stored = bytes.get(start..start + blob.stored_len as usize);
        let result = match stored {
            Some(stored) => pack::decode(&blob, stored, crypto).map(drop),
            None => Err("it lies past the end of the pack".into()),
        };
        if let Err(what) = result {
            problems.push(Problem::BadChunk {
                chunk: blob.id,
                pack,
                what,
                needed_by: Vec::new(),
            });
        }
    }
    problems
}
