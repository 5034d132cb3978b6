//! Backing up: a directory walk, a tar stream or a byte stream becomes
//! chunks for the [`Sink`], and directory listings become trees.
//!
//! Local files are read by one reader per core, each chunking, hashing and
//! compressing its own files, each opened as the walk listed it: by name
//! from its directory, never through a link, and only if it is still the
//! file the walk saw. A tar or byte stream is read by one thread and its
//! chunks compressed by a pool. Memory stays bounded: the channels between
//! stages hold a few chunks per core and packs go straight to disk.
//! Remote hosts' listings and tars (`remote.rs`) end the same way: the same
//! [`Changes`] rule, arena and [`Store::write_backup`].

mod arena;
mod tar_stream;
mod walk;

use std::fs;
use std::io::{self, Read};
use std::path::{Component, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use chrono::Utc;

use crate::ChunkId;
use crate::chunker::Chunker;
use crate::error::{IoContext, Result, StoreError};
use crate::pack::BlobKind;
use crate::repo::Store;
use crate::snapshot::{Snapshot, SnapshotEntry, Summary};
use crate::tree::{Node, NodeKind};
use crate::writer::{Compressor, Sink, Written};
pub use arena::Stat;
pub(crate) use arena::{Arena, Changes, stat_node};
use tar_stream::tar_arena;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// The host the data came from; `localhost` for local paths.
    pub host: String,
    pub tags: Vec<String>,
    /// Parent snapshot id; by default the latest of the same host and paths.
    pub parent: Option<String>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

/// Counters a progress display can poll while a backup runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Known once the directory walk is over (0 until then).
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
}

/// A file the backup could not read; the snapshot leaves it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub error: String,
}

#[derive(Debug)]
pub struct BackupOutcome {
    pub snapshot: SnapshotEntry,
    pub skipped: Vec<Skipped>,
}

impl Store {
    /// Backs up a tar stream (what a remote host's `tar c` sends), recording
    /// it under `paths`, the paths the tar was made of.
    pub fn backup_tar(
        &mut self,
        reader: impl Read,
        paths: &[String],
        options: &BackupOptions,
        progress: &Progress,
    ) -> Result<BackupOutcome> {
        let started = Instant::now();
        self.prepare_backup()?;
        let parent = self.parent_for(options, paths)?;
        self.write_backup(started, paths.to_vec(), parent, options, |_, sink| {
            Ok((tar_arena(reader, sink, progress)?, Vec::new()))
        })
    }

    /// Backs up one byte stream, such as a database dump, as a file named
    /// `name`; the snapshot's path is `stream:NAME`.
    pub fn backup_stream(
        &mut self,
        name: &str,
        reader: impl Read,
        options: &BackupOptions,
        progress: &Progress,
    ) -> Result<BackupOutcome> {
        let started = Instant::now();
        self.prepare_backup()?;
        let labels = vec![format!("stream:{name}")];
        let parent = self.parent_for(options, &labels)?;
        self.write_backup(started, labels, parent, options, |_, sink| {
            let mut arena = Arena::root(synthetic_dir(Vec::new()));
            let (content, size) = chunk_stream(reader, &mut sink.chunker(), sink, progress, None)
                .at("reading stream", name)?;
            let mut node = synthetic_file(name.as_bytes().to_vec(), 0o600);
            node.size = size;
            node.content = content;
            arena.add(0, node);
            arena.bytes_read = size;
            Ok((arena, Vec::new()))
        })
    }

    /// The end every backup shares: `work` fills an arena through the
    /// sink (reading with `store`), its directories are written bottom-up,
    /// then the index file and, last, the snapshot.
    pub(crate) fn write_backup(
        &mut self,
        started: Instant,
        labels: Vec<String>,
        parent: Option<SnapshotEntry>,
        options: &BackupOptions,
        work: impl FnOnce(&Store, &Sink<'_>) -> Result<(Arena, Vec<Skipped>)>,
    ) -> Result<BackupOutcome> {
        let threads = thread_count(options.threads);
        let store = &*self;
        let (outcome, written) = store.with_writer(store.index(), threads, |sink| {
            let (mut arena, skipped) = work(store, sink)?;
            let tree = arena.write_tree(0, sink);
            Ok((tree, arena.summary(), skipped))
        })?;
        let (tree, summary, skipped) = outcome;
        self.finish(
            started, tree, summary, written, labels, parent, options, skipped,
        )
    }

    /// Brings the index up to date before anything is deduplicated against
    /// it: the caller holds a shared lock, so what this loads is never
    /// older than that lock, which is what prune's deletion relies on.
    pub(crate) fn prepare_backup(&mut self) -> Result<()> {
        self.refresh_index()?;
        self.adopt_unindexed_packs()?;
        Ok(())
    }

    pub(crate) fn parent_for(
        &self,
        options: &BackupOptions,
        paths: &[String],
    ) -> Result<Option<SnapshotEntry>> {
        if let Some(id) = &options.parent {
            return self.find_snapshot(id).map(Some);
        }
        Ok(self
            .snapshots()?
            .into_iter()
            .rfind(|e| e.snapshot.host == options.host && e.snapshot.paths == paths))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        started: Instant,
        tree: ChunkId,
        mut summary: Summary,
        written: Written,
        paths: Vec<String>,
        parent: Option<SnapshotEntry>,
        options: &BackupOptions,
        skipped: Vec<Skipped>,
    ) -> Result<BackupOutcome> {
        if let Some(blob) = written
            .index
            .packs
            .iter()
            .flat_map(|(_, b)| b)
            .find(|b| b.raw_len >= 1 << 24 || b.stored_len >= 1 << 24 || b.offset >= 1 << 30)
        {
            // Only a directory listing can be this large (data chunks stop
            // at 8 MiB); refusing here writes no index and no snapshot.
            return Err(StoreError::Setting(format!(
                "a directory listing of {} MiB is larger than the 16 MiB a chunk may hold (a directory of roughly 100,000 entries); back up its subdirectories separately",
                blob.raw_len >> 20
            )));
        }
        if !written.index.packs.is_empty() {
            self.write_index(&written.index)?;
            self.index_mut().merge(written.index);
        }
        summary.new_chunks = written.chunks;
        summary.new_bytes_raw = written.raw;
        summary.new_bytes_stored = written.stored;
        summary.duration_secs = started.elapsed().as_secs_f64();
        let snapshot = Snapshot {
            time: Utc::now(),
            host: options.host.clone(),
            paths,
            tags: options.tags.clone(),
            parent: parent.map(|p| p.id),
            tree,
            summary,
        };
        let id = self.write_snapshot(&snapshot)?;
        Ok(BackupOutcome {
            snapshot: SnapshotEntry { id, snapshot },
            skipped,
        })
    }
}

/// Chunks one stream into the sink; with a compressor, compresses here.
pub(crate) fn chunk_stream(
    reader: impl Read,
    chunker: &mut Chunker,
    sink: &Sink<'_>,
    progress: &Progress,
    mut compressor: Option<&mut Compressor>,
) -> io::Result<(Vec<ChunkId>, u64)> {
    let mut ids = Vec::new();
    let mut size = 0;
    for chunk in chunker.chunks(reader) {
        let chunk = chunk?;
        size += chunk.len() as u64;
        progress
            .bytes_done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        ids.push(sink.put(BlobKind::Data, chunk, compressor.as_deref_mut()));
        if sink.failed() {
            break;
        }
    }
    Ok((ids, size))
}

fn thread_count(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    thread::available_parallelism().map_or(2, |n| n.get())
}

fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let absolute = std::path::absolute(path).at("resolving", path)?;
        let clean: PathBuf = absolute
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if clean.components().any(|c| c == Component::ParentDir) {
            return Err(StoreError::Setting(format!(
                "{}: give the path without `..`",
                path.display()
            )));
        }
        fs::symlink_metadata(&clean).at("reading", &clean)?;
        out.push(clean);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(any(test, feature = "crafted"))]
impl Store {
    /// Test support (feature `crafted`): [`Store::backup_paths`], calling
    /// `before_open` with each path the walk has looked at, just before it
    /// is opened (a directory to list, a file to read), so a test can swap
    /// what is there in between.
    #[doc(hidden)]
    pub fn backup_paths_with_swaps(
        &mut self,
        paths: &[PathBuf],
        options: &BackupOptions,
        progress: &Progress,
        before_open: impl Fn(&std::path::Path) + Sync,
    ) -> Result<BackupOutcome> {
        self.backup_local(paths, options, progress, &before_open)
    }

    /// Test support (feature `crafted`): a snapshot of `host` that no
    /// backup would write, holding a directory `dir` of empty files named
    /// `names` as given, `..`, `../x` and `a/b` included.
    #[doc(hidden)]
    pub fn write_crafted_snapshot(
        &mut self,
        host: &str,
        dir: &str,
        names: &[&str],
    ) -> Result<SnapshotEntry> {
        let options = BackupOptions {
            host: host.into(),
            ..BackupOptions::default()
        };
        let outcome = self.write_backup(
            Instant::now(),
            vec!["/crafted".into()],
            None,
            &options,
            |_, _| {
                let mut arena = Arena::root(synthetic_dir(Vec::new()));
                let at = arena.add(0, synthetic_dir(dir.as_bytes().to_vec()));
                for name in names {
                    arena.add(at, synthetic_file(name.as_bytes().to_vec(), 0o644));
                }
                Ok((arena, Vec::new()))
            },
        )?;
        Ok(outcome.snapshot)
    }
}

pub(crate) fn synthetic_dir(name: Vec<u8>) -> Node {
    Node {
        kind: NodeKind::Dir,
        mode: 0o755,
        ..synthetic_file(name, 0o755)
    }
}

pub(crate) fn synthetic_file(name: Vec<u8>, mode: u32) -> Node {
    Node {
        name,
        kind: NodeKind::File,
        mode,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        user: None,
        group: None,
        size: 0,
        mtime_ns: Utc::now().timestamp_nanos_opt().unwrap_or(0),
        ctime_ns: 0,
        inode: 0,
        device: 0,
        links: 1,
        target: None,
        rdev: None,
        content: Vec::new(),
        subtree: None,
    }
}
