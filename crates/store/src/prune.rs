//! Prune: deleting what no snapshot needs, without ever blocking a backup.
//!
//! A pack no snapshot needs is first *marked* in a new index file that
//! replaces the old ones; backups stop storing into marked packs but
//! readers still find them. A later prune deletes a pack once it has been
//! marked for the delete delay and no lock older than its mark remains,
//! so every backup that could have named its chunks has finished and its
//! snapshot is on disk; if a snapshot turns out to need a marked pack, the
//! pack is recovered instead. FORMAT.md gives the argument in full.

use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ChunkId;
use crate::error::{IoContext, Result, StoreError};
use crate::index::{Index, IndexFile, Location};
use crate::lock::{Lock, LockInfo};
use crate::pack::PackId;
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use crate::tree::NodeKind;

/// Seconds after a mark's time during which a new lock still holds its
/// deletion back: covers writing and syncing the index that carries it.
const MARK_MARGIN: i64 = 60;

#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Packs whose share of bytes still needed is below this (0.0 to 1.0)
    /// are rewritten: their needed chunks copied to new packs, the rest
    /// freed with them.
    pub repack_below: f64,
    /// Then the least needed packs are repacked too, until the bytes no
    /// snapshot needs are at most this share of those needed (restic's
    /// `--max-unused`): space comes back without rewriting everything.
    pub max_unused: f64,
    /// How long a pack stays marked before a prune may delete it.
    pub delete_delay: Duration,
    pub dry_run: bool,
    /// Compressor threads for repacking; 0 for one per core.
    pub threads: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            repack_below: 0.5,
            max_unused: 0.05,
            delete_delay: Duration::from_secs(24 * 3600),
            dry_run: false,
            threads: 0,
        }
    }
}

/// A number of packs and their size on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Packs {
    pub packs: usize,
    pub bytes: u64,
}

impl Packs {
    fn add(&mut self, bytes: u64) {
        self.packs += 1;
        self.bytes += bytes;
    }
}

/// What a prune did, or with `dry_run` would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub snapshots: usize,
    /// Indexed packs before the prune.
    pub packs: Packs,
    /// Stored bytes of the chunks some snapshot needs.
    pub used_bytes: u64,
    /// Packs no snapshot needs, marked for deletion now.
    pub marked: Packs,
    /// Packs rewritten because little of them is needed; marked too.
    pub repacked: Packs,
    /// Bytes copied from repacked packs into new ones.
    pub rewritten_bytes: u64,
    /// Marked packs a snapshot turned out to need: live again.
    pub recovered: Packs,
    /// Packs deleted: the space reclaimed now.
    pub deleted: Packs,
    /// Packs marked and waiting for a later prune.
    pub pending: Packs,
    /// When the earliest pending pack may be deleted.
    pub pending_until: Option<DateTime<Utc>>,
    /// A lock older than some marks, which holds their deletion back.
    pub deferred_by: Option<LockInfo>,
    /// Whole packs no index named (an interrupted backup's), now marked.
    pub adopted: Packs,
    /// Packs no index named that are damaged; `store repair` handles them.
    pub damaged_unindexed: Vec<(PackId, String)>,
    /// Temporary files of interrupted writers removed.
    pub tmp_removed: Packs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Mark,
    Repack,
    Recover,
    Pending,
    Delete,
}

impl Store {
    /// Prunes the store under `lock`, which must be a prune lock.
    pub fn prune(&mut self, lock: &Lock, options: &PruneOptions) -> Result<PruneReport> {
        let now = Utc::now().timestamp();
        let delay = i64::try_from(options.delete_delay.as_secs()).unwrap_or(i64::MAX);
        // Locks are read before snapshots: a backup whose lock is gone by
        // now has written its snapshot, so the walk below sees it.
        let oldest = self
            .locks()?
            .into_iter()
            .filter(|(path, _)| *path != lock.path)
            .map(|(_, info)| info)
            .min_by_key(|info| info.time);
        // Then the snapshots, then the index: every snapshot listed has
        // its index file written already, so its chunks are all found.
        let snapshots = self.snapshots()?;
        self.load_index()?;
        let sizes = self.pack_sizes()?;
        let used = self.used_chunks(&snapshots)?;
        let mut report = PruneReport {
            snapshots: snapshots.len(),
            ..PruneReport::default()
        };
        let live = self.live_bytes(&used);
        report.used_bytes = live.iter().sum();
        let mut actions = Vec::with_capacity(sizes.len());
        for (number, (&size, &live)) in sizes.iter().zip(&live).enumerate() {
            report.packs.add(size);
            let action = match self.index().marked(number) {
                Some(_) if live > 0 => Action::Recover,
                Some(mark) if now.saturating_sub(mark) < delay => Action::Pending,
                Some(mark) => match &oldest {
                    Some(info) if info.time.timestamp() <= mark + MARK_MARGIN => {
                        report.deferred_by = Some(info.clone());
                        Action::Pending
                    }
                    _ => Action::Delete,
                },
                None if live == 0 => Action::Mark,
                None if (live as f64) < options.repack_below * size as f64 => Action::Repack,
                None => Action::Keep,
            };
            actions.push(action);
        }
        let indexed = self.indexed_bytes();
        repack_to_limit(&mut actions, &indexed, &live, options.max_unused);
        let (adopted, damaged) = self.unindexed_packs()?;
        report.damaged_unindexed = damaged;
        for (pack, _) in &adopted.packs {
            report.adopted.add(file_len(&self.pack_path(*pack)));
        }
        let tmp = self.stale_temp_files(now, delay, oldest.as_ref())?;
        Self::tally(&actions, &sizes, &live, &mut report);
        let earliest = actions
            .iter()
            .enumerate()
            .filter_map(|(number, action)| match action {
                Action::Pending => self.index().marked(number),
                Action::Mark | Action::Repack => Some(now),
                _ => None,
            })
            .chain((!adopted.packs.is_empty()).then_some(now))
            .min();
        report.pending_until =
            earliest.and_then(|mark| DateTime::from_timestamp(mark.saturating_add(delay), 0));
        for (path, len) in &tmp {
            report.tmp_removed.add(*len);
            if !options.dry_run {
                fs::remove_file(path).at("removing", path)?;
            }
        }
        let changes = actions
            .iter()
            .any(|a| !matches!(a, Action::Keep | Action::Pending));
        if options.dry_run || !changes && adopted.packs.is_empty() {
            return Ok(report);
        }
        self.apply(&actions, &used, adopted, now, options)?;
        Ok(report)
    }

    /// Rewrites the index as one file that supersedes all loaded ones,
    /// after copying the needed chunks of repacked packs; then deletes
    /// what the new index no longer names.
    fn apply(
        &mut self,
        actions: &[Action],
        used: &Bitset,
        mut adopted: IndexFile,
        now: i64,
        options: &PruneOptions,
    ) -> Result<()> {
        let (copied, copied_name) = self.repack(actions, used, options.threads)?;
        // The mark's time is taken when the index that carries it is about
        // to be written, not when prune started: a backup that took its
        // lock before this may still have loaded the index without marks.
        let now = now.max(Utc::now().timestamp());
        let packs = self.index().packs().to_vec();
        let marks: Vec<i64> = (0..packs.len())
            .map(|number| match actions[number] {
                Action::Mark | Action::Repack => now,
                Action::Keep | Action::Recover => 0,
                Action::Pending | Action::Delete => self.index().marked(number).unwrap_or(0),
            })
            .collect();
        adopted.marked = adopted.packs.iter().map(|(p, _)| (*p, now)).collect();
        // Marks first, so a chunk both in a repacked pack and in its copy
        // is found in the copy; new packs come after the old numbers.
        let index = self.index_mut();
        index.set_marks(&marks);
        index.merge(copied);
        index.merge(adopted);
        let keep = |number: usize| actions.get(number) != Some(&Action::Delete);
        let mut combined = self.index().to_file(keep);
        let mut superseded = self.index_files().to_vec();
        superseded.extend(copied_name);
        combined.supersedes = superseded.clone();
        self.write_index(&combined)?;
        for name in &superseded {
            let path = self.root().join("index").join(name);
            remove_if_present(&path)?;
        }
        for (number, action) in actions.iter().enumerate() {
            if *action == Action::Delete {
                remove_if_present(&self.pack_path(packs[number]))?;
            }
        }
        self.load_index()
    }

    /// Copies the needed chunks of the packs to repack into new packs and
    /// indexes them (an index file of their own, so a prune killed after
    /// this has lost nothing); returns that file and its name.
    fn repack(
        &self,
        actions: &[Action],
        used: &Bitset,
        threads: usize,
    ) -> Result<(IndexFile, Option<String>)> {
        let mut chunks: Vec<Location> = used
            .ones()
            .map(|at| self.index().at(at))
            .filter(|(pack, _)| actions[*pack] == Action::Repack)
            .map(|(_, location)| location)
            .collect();
        if chunks.is_empty() {
            return Ok((IndexFile::default(), None));
        }
        chunks.sort_unstable_by_key(|l| (l.pack, l.blob.offset));
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let nothing_known = Index::default();
        let ((), written) = self.with_writer(&nothing_known, threads, |sink| {
            let mut packs = PackFiles::default();
            for location in &chunks {
                let data = self.read_blob(*location, &mut packs)?;
                sink.put(location.blob.kind, data, None);
            }
            Ok(())
        })?;
        let name = if written.index.packs.is_empty() {
            None
        } else {
            Some(self.write_index(&written.index)?)
        };
        Ok((written.index, name))
    }

    /// Marks every chunk the snapshots need, trees and file contents, in a
    /// bitset over the index's entries: one bit per chunk, where a hash
    /// set of ids would take some 60 bytes. A needed chunk that is in no
    /// pack stops the prune before anything is changed.
    fn used_chunks(&self, snapshots: &[SnapshotEntry]) -> Result<Bitset> {
        let mut used = Bitset::new(self.index().len());
        let mut packs = PackFiles::default();
        // What repair recorded as lost stays lost; the rest is kept.
        let damaged = self.damaged_snapshots();
        let missing = |entry: &SnapshotEntry, chunk: ChunkId| StoreError::PruneRefused {
            what: format!(
                "snapshot {} needs chunk {chunk}, which is in no pack",
                entry.short_id()
            ),
        };
        for entry in snapshots {
            let known = damaged.contains_key(&entry.id);
            let mut stack = vec![entry.snapshot.tree];
            while let Some(tree_id) = stack.pop() {
                let Some(at) = self.index().position(&tree_id) else {
                    if known {
                        continue;
                    }
                    return Err(missing(entry, tree_id));
                };
                if !used.insert(at) {
                    continue; // this tree and all below it are marked
                }
                for node in self.load_tree(tree_id, &mut packs)?.nodes {
                    for chunk in &node.content {
                        match self.index().position(chunk) {
                            Some(at) => {
                                used.insert(at);
                            }
                            None if known => {}
                            None => return Err(missing(entry, *chunk)),
                        }
                    }
                    if let (NodeKind::Dir, Some(subtree)) = (node.kind, node.subtree) {
                        stack.push(subtree);
                    }
                }
            }
        }
        Ok(used)
    }

    /// Each indexed pack's size on disk; a missing pack stops the prune.
    fn pack_sizes(&self) -> Result<Vec<u64>> {
        self.index()
            .packs()
            .iter()
            .map(|pack| {
                let path = self.pack_path(*pack);
                match fs::metadata(&path) {
                    Ok(meta) => Ok(meta.len()),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        Err(StoreError::PruneRefused {
                            what: format!("pack {pack} is in the index but not on disk"),
                        })
                    }
                    Err(err) => Err(err).at("reading", path),
                }
            })
            .collect()
    }

    /// Stored bytes of every indexed chunk, per pack number.
    fn indexed_bytes(&self) -> Vec<u64> {
        let mut bytes = vec![0u64; self.index().packs().len()];
        for at in 0..self.index().len() {
            let (pack, location) = self.index().at(at);
            bytes[pack] += u64::from(location.blob.stored_len);
        }
        bytes
    }

    /// Stored bytes of needed chunks, per pack number.
    fn live_bytes(&self, used: &Bitset) -> Vec<u64> {
        let mut live = vec![0u64; self.index().packs().len()];
        for at in used.ones() {
            let (pack, location) = self.index().at(at);
            live[pack] += u64::from(location.blob.stored_len);
        }
        live
    }

    fn tally(actions: &[Action], sizes: &[u64], live: &[u64], report: &mut PruneReport) {
        for (number, action) in actions.iter().enumerate() {
            let size = sizes[number];
            match action {
                Action::Keep => {}
                Action::Mark => report.marked.add(size),
                Action::Repack => {
                    report.repacked.add(size);
                    report.rewritten_bytes += live[number];
                }
                Action::Recover => report.recovered.add(size),
                Action::Pending => report.pending.add(size),
                Action::Delete => report.deleted.add(size),
            }
        }
    }

    /// Files in `tmp/` older than the delay and than every other lock:
    /// no writer that is still running can own them.
    fn stale_temp_files(
        &self,
        now: i64,
        delay: i64,
        oldest: Option<&LockInfo>,
    ) -> Result<Vec<(std::path::PathBuf, u64)>> {
        let mut stale = Vec::new();
        for name in self.list("tmp")? {
            let path = self.root().join("tmp").join(&name);
            let Ok(meta) = fs::metadata(&path) else {
                continue; // renamed into place while listing
            };
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(now, |d| d.as_secs() as i64);
            let old = now.saturating_sub(modified) >= delay;
            if old && oldest.is_none_or(|l| l.time.timestamp() > modified) {
                stale.push((path, meta.len()));
            }
        }
        Ok(stale)
    }
}

/// Turns kept packs into repacked ones, least needed first, until what
/// stays unneeded in kept packs is at most `max_unused` of what is needed.
/// `sizes` are the stored bytes of each pack's chunks: headers are not
/// unused space, or small-file packs would be repacked on every run.
fn repack_to_limit(actions: &mut [Action], sizes: &[u64], live: &[u64], max_unused: f64) {
    let needed: u64 = live.iter().sum();
    let limit = (max_unused * needed as f64) as u64;
    let mut kept: Vec<usize> = (0..actions.len())
        .filter(|&n| actions[n] == Action::Keep && live[n] < sizes[n])
        .collect();
    let mut unused: u64 = kept.iter().map(|&n| sizes[n] - live[n]).sum();
    kept.sort_by(|&a, &b| {
        let share = |n: usize| live[n] as f64 / sizes[n].max(1) as f64;
        share(a).total_cmp(&share(b))
    });
    for n in kept {
        if unused <= limit {
            break;
        }
        actions[n] = Action::Repack;
        unused -= sizes[n] - live[n];
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn remove_if_present(path: &std::path::Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.at("removing", path),
    }
}

/// One bit per index entry.
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    /// Sets the bit; false if it was set already.
    fn insert(&mut self, at: usize) -> bool {
        let (word, bit) = (at / 64, 1u64 << (at % 64));
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }

    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(word, &bits)| {
            (0..64)
                .filter(move |bit| bits >> bit & 1 == 1)
                .map(move |bit| word * 64 + bit)
        })
    }
}
