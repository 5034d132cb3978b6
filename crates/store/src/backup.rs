//! Backing up: a directory walk, a tar stream or a byte stream becomes
//! chunks for the [`Sink`], and directory listings become trees.
//!
//! Local files are read by one reader per core, each chunking, hashing and
//! compressing its own files; a tar or byte stream is read by one thread
//! and its chunks compressed by a pool. Memory stays bounded: the channels
//! between stages hold a few chunks per core and packs go straight to disk.
//! Remote hosts' listings and tars (`remote.rs`) end the same way: the same
//! [`Changes`] rule, arena and [`Store::write_backup`].

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use chrono::Utc;
use crossbeam_channel::unbounded;

use crate::ChunkId;
use crate::chunker::Chunker;
use crate::error::{IoContext, Result, StoreError};
use crate::pack::BlobKind;
use crate::repo::{PackFiles, Store};
use crate::snapshot::{Snapshot, SnapshotEntry, Summary};
use crate::tree::{Node, NodeKind, Tree};
use crate::writer::{Compressor, Sink, Written};

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
    /// Backs up local paths. Files unchanged since the parent snapshot (same
    /// size, mtime, ctime, inode and device) reuse its chunk lists unread.
    pub fn backup_paths(
        &mut self,
        paths: &[PathBuf],
        options: &BackupOptions,
        progress: &Progress,
    ) -> Result<BackupOutcome> {
        let started = Instant::now();
        self.prepare_backup()?;
        let paths = absolute_paths(paths)?;
        let labels: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let parent = self.parent_for(options, &labels)?;
        let parent_tree = match &parent {
            Some(entry) => Some(self.load_tree(entry.snapshot.tree, &mut PackFiles::default())?),
            None => None,
        };
        let threads = thread_count(options.threads);
        // Readers start while the walk is still finding files.
        self.write_backup(started, labels, parent, options, |store, sink| {
            let (job_tx, job_rx) = unbounded();
            let (done_tx, done_rx) = unbounded();
            thread::scope(|scope| {
                for _ in 0..threads {
                    let (jobs, done) = (job_rx.clone(), done_tx.clone());
                    scope.spawn(move || read_files(jobs, done, sink, progress));
                }
                drop(done_tx);
                let mut scan = Scan::new(store, parent_tree, job_tx, progress);
                let walked = paths.iter().try_for_each(|path| scan.add_path(path));
                scan.jobs = None;
                if walked.is_err() {
                    job_rx.try_iter().for_each(drop);
                }
                scan.collect(done_rx);
                walked?;
                Ok((scan.arena, scan.skipped))
            })
        })
    }

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

/// The nodes of a backup, as a tree of indices; directories are written
/// bottom-up once every file's chunks are known.
#[derive(Debug)]
pub(crate) struct Arena {
    pub(crate) nodes: Vec<Node>,
    pub(crate) children: Vec<Vec<usize>>,
    pub(crate) bytes_read: u64,
    pub(crate) unchanged: u64,
    /// Entries taken out of the tree (unreadable or vanished files).
    removed: HashSet<usize>,
}

impl Arena {
    pub(crate) fn root(node: Node) -> Self {
        Self {
            nodes: vec![node],
            children: vec![Vec::new()],
            bytes_read: 0,
            unchanged: 0,
            removed: HashSet::new(),
        }
    }

    pub(crate) fn add(&mut self, parent: usize, node: Node) -> usize {
        self.nodes.push(node);
        self.children.push(Vec::new());
        let at = self.nodes.len() - 1;
        self.children[parent].push(at);
        at
    }

    pub(crate) fn child(&self, parent: usize, name: &[u8]) -> Option<usize> {
        self.children[parent]
            .iter()
            .copied()
            .find(|&c| self.nodes[c].name == name)
    }

    /// Gives each further name of a hard-linked file its first name's
    /// content, then takes the files in `gone` out of the tree, with the
    /// further names of any of them, which are returned as skipped.
    pub(crate) fn settle(
        &mut self,
        link_copies: Vec<(usize, usize)>,
        mut gone: HashSet<usize>,
    ) -> Vec<Skipped> {
        let mut orphans = HashSet::new();
        for (at, first) in link_copies {
            if gone.contains(&first) {
                orphans.insert(at);
                continue;
            }
            let (content, size) = (self.nodes[first].content.clone(), self.nodes[first].size);
            self.nodes[at].content = content;
            self.nodes[at].size = size;
        }
        let skipped = self
            .paths_of(&orphans)
            .into_iter()
            .map(|path| Skipped {
                path,
                error: "another name of a file that could not be read".into(),
            })
            .collect();
        gone.extend(orphans);
        if !gone.is_empty() {
            for children in &mut self.children {
                children.retain(|c| !gone.contains(c));
            }
        }
        self.removed.extend(gone);
        skipped
    }

    /// The full paths of some entries, found by walking the tree.
    fn paths_of(&self, wanted: &HashSet<usize>) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![(0, Vec::new())];
        while let Some((at, path)) = stack.pop() {
            if found.len() == wanted.len() {
                break;
            }
            for &child in &self.children[at] {
                let mut path = path.clone();
                path.push(b'/');
                path.extend_from_slice(&self.nodes[child].name);
                if wanted.contains(&child) {
                    found.push(String::from_utf8_lossy(&path).into_owned());
                }
                stack.push((child, path));
            }
        }
        found
    }

    fn write_tree(&mut self, at: usize, sink: &Sink<'_>) -> ChunkId {
        let children = std::mem::take(&mut self.children[at]);
        let mut tree = Tree::default();
        for child in children {
            if self.nodes[child].kind == NodeKind::Dir {
                let id = self.write_tree(child, sink);
                self.nodes[child].subtree = Some(id);
            }
            tree.nodes.push(self.nodes[child].clone());
        }
        tree.sort();
        tree.nodes.dedup_by(|a, b| a.name == b.name);
        sink.put(BlobKind::Tree, tree.encode(), None)
    }

    /// The counters of the entries in the tree (not those taken out).
    fn summary(&self) -> Summary {
        let present = || {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(at, _)| !self.removed.contains(at))
                .map(|(_, node)| node)
        };
        let count = |kind| present().filter(|n| n.kind == kind).count() as u64;
        Summary {
            files: count(NodeKind::File),
            dirs: count(NodeKind::Dir),
            files_unchanged: self.unchanged,
            bytes_read: self.bytes_read,
            bytes_total: present()
                .filter(|n| n.kind == NodeKind::File)
                .map(|n| n.size)
                .sum(),
            ..Summary::default()
        }
    }
}

/// Whether an entry is the same as its parent snapshot's, by the rule
/// every backup uses: same type, size, mtime, ctime, inode and device.
fn unchanged(previous: &Node, node: &Node) -> bool {
    previous.kind == node.kind
        && previous.size == node.size
        && previous.mtime_ns == node.mtime_ns
        && previous.ctime_ns == node.ctime_ns
        && previous.inode == node.inode
        && previous.device == node.device
}

/// Decides what must be read, for local walks and remote listings alike: a
/// file unchanged since the parent snapshot (and whose chunks are all in
/// live packs) takes its chunk list from there, a further name of a
/// hard-linked file takes its first name's content, anything else is read.
pub(crate) struct Changes<'s> {
    store: &'s Store,
    /// The parent snapshot's listing of each directory being compared.
    parents: HashMap<usize, Tree>,
    /// First arena index seen for each (device, inode) with several links.
    links: HashMap<(u64, u64), usize>,
    /// Further names of a hard-linked file, and the first name's index.
    pub(crate) link_copies: Vec<(usize, usize)>,
    packs: PackFiles,
}

impl<'s> Changes<'s> {
    pub(crate) fn new(store: &'s Store, parent_tree: Option<Tree>) -> Self {
        let mut parents = HashMap::new();
        if let Some(tree) = parent_tree {
            parents.insert(0, tree);
        }
        Self {
            store,
            parents,
            links: HashMap::new(),
            link_copies: Vec::new(),
            packs: PackFiles::default(),
        }
    }

    /// Compares entry `at`, just added under `parent`, with the parent
    /// snapshot. Returns whether it must be read: a file's content, or the
    /// number of a device node that came without one.
    pub(crate) fn compare(&mut self, arena: &mut Arena, parent: usize, at: usize) -> bool {
        let node = &arena.nodes[at];
        let previous = self
            .parents
            .get(&parent)
            .and_then(|t| t.find(&node.name))
            .cloned();
        match node.kind {
            NodeKind::Dir => {
                if let Some(subtree) = previous.and_then(|p| p.subtree)
                    && let Ok(tree) = self.store.load_tree(subtree, &mut self.packs)
                {
                    self.parents.insert(at, tree);
                }
                false
            }
            NodeKind::File => {
                if node.links > 1 {
                    let identity = (node.device, node.inode);
                    if let Some(&first) = self.links.get(&identity) {
                        self.link_copies.push((at, first));
                        return false;
                    }
                    self.links.insert(identity, at);
                }
                match previous {
                    Some(p)
                        if unchanged(&p, node)
                            && p.content
                                .iter()
                                .all(|c| self.store.index().contains_live(c)) =>
                    {
                        arena.nodes[at].content = p.content;
                        arena.unchanged += 1;
                        false
                    }
                    _ => true,
                }
            }
            NodeKind::Chardev | NodeKind::Blockdev if node.rdev.is_none() => match previous {
                Some(p) if unchanged(&p, node) && p.rdev.is_some() => {
                    arena.nodes[at].rdev = p.rdev;
                    false
                }
                _ => true,
            },
            _ => false,
        }
    }

    /// Forgets a directory's parent listing once its entries are compared.
    pub(crate) fn leave(&mut self, at: usize) {
        self.parents.remove(&at);
    }
}

/// A file to read: its arena index, path and size as the walk saw it.
type Job = (usize, PathBuf, u64);
/// A file read: its arena index, path, and chunk ids and size, or the error.
type Done = (usize, PathBuf, io::Result<(Vec<ChunkId>, u64)>);

/// Files at least this large have their chunks compressed by the pool, so
/// a big file read last still uses every core.
const POOLED_FILE: u64 = 4 << 20;

/// One reader: chunks, hashes and (for small files) compresses whole files.
fn read_files(
    jobs: crossbeam_channel::Receiver<Job>,
    done: crossbeam_channel::Sender<Done>,
    sink: &Sink<'_>,
    progress: &Progress,
) {
    let mut chunker = sink.chunker();
    let mut compressor = sink.compressor();
    for (at, path, size) in jobs {
        if sink.failed() {
            break;
        }
        let inline = (size < POOLED_FILE).then_some(&mut compressor);
        let read = File::open(&path)
            .and_then(|file| chunk_stream(file, &mut chunker, sink, progress, inline));
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        let _ = done.send((at, path, read));
    }
}

/// The walk over local paths.
struct Scan<'s> {
    progress: &'s Progress,
    /// Where files to read go; `None` once the walk is over.
    jobs: Option<crossbeam_channel::Sender<Job>>,
    arena: Arena,
    changes: Changes<'s>,
    names: Names,
    skipped: Vec<Skipped>,
}

impl<'s> Scan<'s> {
    fn new(
        store: &'s Store,
        parent_tree: Option<Tree>,
        jobs: crossbeam_channel::Sender<Job>,
        progress: &'s Progress,
    ) -> Self {
        let root_meta = fs::symlink_metadata("/").ok();
        let mut names = Names::default();
        let root = match &root_meta {
            Some(meta) => node_from(Vec::new(), meta, &mut names),
            None => synthetic_dir(Vec::new()),
        };
        Self {
            progress,
            jobs: Some(jobs),
            arena: Arena::root(root),
            changes: Changes::new(store, parent_tree),
            names,
            skipped: Vec::new(),
        }
    }

    /// Adds the directories leading to `path`, then `path` and all below it.
    fn add_path(&mut self, path: &Path) -> Result<()> {
        let mut at = 0;
        let mut prefix = PathBuf::from("/");
        let components: Vec<_> = path.components().skip(1).collect();
        for (i, component) in components.iter().enumerate() {
            prefix.push(component);
            let name = component.as_os_str().as_encoded_bytes().to_vec();
            let meta = fs::symlink_metadata(&prefix).at("reading", &prefix)?;
            let last = i + 1 == components.len();
            at = match self.arena.child(at, &name) {
                Some(existing) if !last => existing,
                _ => {
                    let node = node_from(name, &meta, &mut self.names);
                    self.enter(at, node, &prefix, last)
                }
            };
        }
        Ok(())
    }

    /// Records one entry; a directory is walked when `recurse` is set.
    fn enter(&mut self, parent: usize, mut node: Node, path: &Path, recurse: bool) -> usize {
        if node.kind == NodeKind::Symlink {
            match fs::read_link(path) {
                Ok(target) => node.target = Some(target.into_os_string().into_encoded_bytes()),
                Err(err) => self.skip(path, &err),
            }
        }
        let is_dir = node.kind == NodeKind::Dir;
        let at = self.arena.add(parent, node);
        if self.changes.compare(&mut self.arena, parent, at) {
            let size = self.arena.nodes[at].size;
            self.progress.files_total.fetch_add(1, Ordering::Relaxed);
            self.progress.bytes_total.fetch_add(size, Ordering::Relaxed);
            if let Some(jobs) = &self.jobs {
                let _ = jobs.send((at, path.to_path_buf(), size));
            }
        }
        if is_dir && recurse {
            self.walk(at, path);
            self.changes.leave(at);
        }
        at
    }

    fn walk(&mut self, at: usize, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => return self.skip(dir, &err),
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            match fs::symlink_metadata(&path) {
                Ok(meta) => {
                    let node = node_from(name.as_encoded_bytes().to_vec(), &meta, &mut self.names);
                    self.enter(at, node, &path, true);
                }
                Err(err) => self.skip(&path, &err),
            }
        }
    }

    fn skip(&mut self, path: &Path, err: &io::Error) {
        self.skipped.push(Skipped {
            path: path.display().to_string(),
            error: err.to_string(),
        });
    }

    /// Takes in what the readers found, once they are all done.
    fn collect(&mut self, done_rx: crossbeam_channel::Receiver<Done>) {
        let mut unreadable = HashSet::new();
        for (at, path, read) in done_rx {
            match read {
                Ok((content, size)) => {
                    let node = &mut self.arena.nodes[at];
                    node.content = content;
                    node.size = size;
                    self.arena.bytes_read += size;
                }
                Err(err) => {
                    self.skip(&path, &err);
                    unreadable.insert(at);
                }
            }
        }
        let copies = std::mem::take(&mut self.changes.link_copies);
        let orphans = self.arena.settle(copies, unreadable);
        self.skipped.extend(orphans);
    }
}

/// User and group names by id, looked up once each.
#[derive(Default)]
struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// What `lstat` says about an entry, from a local call or a remote listing.
pub(crate) struct Stat {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
    pub links: u64,
    /// A device node's number; `None` when the source cannot tell.
    pub rdev: Option<u64>,
}

/// The node of an entry: sizes only for files, one link for directories.
pub(crate) fn stat_node(
    name: Vec<u8>,
    stat: Stat,
    user: Option<String>,
    group: Option<String>,
) -> Node {
    let kind = stat.kind;
    Node {
        name,
        kind,
        mode: stat.mode & 0o7777,
        uid: stat.uid,
        gid: stat.gid,
        user,
        group,
        size: if kind == NodeKind::File { stat.size } else { 0 },
        mtime_ns: stat.mtime_ns,
        ctime_ns: stat.ctime_ns,
        inode: stat.inode,
        device: stat.device,
        links: if kind == NodeKind::Dir { 1 } else { stat.links },
        target: None,
        rdev: stat
            .rdev
            .filter(|_| matches!(kind, NodeKind::Chardev | NodeKind::Blockdev)),
        content: Vec::new(),
        subtree: None,
    }
}

fn node_from(name: Vec<u8>, meta: &Metadata, names: &mut Names) -> Node {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        NodeKind::Dir
    } else if file_type.is_symlink() {
        NodeKind::Symlink
    } else if file_type.is_char_device() {
        NodeKind::Chardev
    } else if file_type.is_block_device() {
        NodeKind::Blockdev
    } else if file_type.is_fifo() {
        NodeKind::Fifo
    } else if file_type.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    };
    let stat = Stat {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        rdev: Some(meta.rdev()),
    };
    stat_node(name, stat, names.user(meta.uid()), names.group(meta.gid()))
}

#[cfg(any(test, feature = "crafted"))]
impl Store {
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

/// Reads a tar stream into an arena, chunking file contents as they come.
fn tar_arena(reader: impl Read, sink: &Sink<'_>, progress: &Progress) -> Result<Arena> {
    let tar_err = |err: io::Error| StoreError::Tar(err.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut arena = Arena::root(synthetic_dir(Vec::new()));
    let mut chunker = sink.chunker();
    let mut by_path: HashMap<Vec<Vec<u8>>, usize> = HashMap::new();
    let mut next_inode = 1;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let parts = tar_components(&entry.path_bytes())?;
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        let parent = tar_dirs(&mut arena, &mut by_path, dirs);
        let header = entry.header();
        let mut node = synthetic_file(name.clone(), header.mode().map_err(tar_err)? & 0o7777);
        node.uid = header.uid().map_err(tar_err)? as u32;
        node.gid = header.gid().map_err(tar_err)? as u32;
        node.user = header.username().ok().flatten().map(str::to_string);
        node.group = header.groupname().ok().flatten().map(str::to_string);
        node.mtime_ns = header.mtime().map_err(tar_err)? as i64 * 1_000_000_000;
        node.inode = next_inode;
        next_inode += 1;
        let kind = header.entry_type();
        let link_target = entry.link_name_bytes().map(|l| l.into_owned());
        match kind {
            tar::EntryType::Directory => node.kind = NodeKind::Dir,
            tar::EntryType::Symlink => {
                node.kind = NodeKind::Symlink;
                node.target = link_target;
            }
            tar::EntryType::Link => {
                let target = tar_components(&link_target.unwrap_or_default())?;
                let Some(&first) = by_path.get(&target) else {
                    return Err(StoreError::Tar(format!(
                        "hard link {} points to {}, which came before it in no entry",
                        String::from_utf8_lossy(&parts.join(&b'/')),
                        String::from_utf8_lossy(&target.join(&b'/'))
                    )));
                };
                arena.nodes[first].links += 1;
                let original = arena.nodes[first].clone();
                node = Node {
                    name: name.clone(),
                    ..original
                };
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                node.kind = if kind == tar::EntryType::Char {
                    NodeKind::Chardev
                } else {
                    NodeKind::Blockdev
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                node.rdev = Some(nix::sys::stat::makedev(major.into(), minor.into()));
            }
            tar::EntryType::Fifo => node.kind = NodeKind::Fifo,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let (content, size) = chunk_stream(&mut entry, &mut chunker, sink, progress, None)
                    .map_err(tar_err)?;
                node.content = content;
                node.size = size;
                arena.bytes_read += size;
                progress.files_done.fetch_add(1, Ordering::Relaxed);
            }
            _ => continue,
        }
        let at = match by_path.get(&parts) {
            Some(&existing) if node.kind == NodeKind::Dir => {
                arena.nodes[existing] = node;
                existing
            }
            _ => arena.add(parent, node),
        };
        by_path.insert(parts, at);
        if sink.failed() {
            break;
        }
    }
    // Hard links share their first name's link count.
    for at in 0..arena.nodes.len() {
        if arena.nodes[at].kind == NodeKind::File && arena.nodes[at].links > 1 {
            let inode = arena.nodes[at].inode;
            let links = arena.nodes[at].links;
            for node in arena.nodes.iter_mut().filter(|n| n.inode == inode) {
                node.links = links;
            }
        }
    }
    Ok(arena)
}

/// A tar member's path as safe components; `..` is refused.
fn tar_components(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(StoreError::EscapingPath {
                    name: String::from_utf8_lossy(path).into_owned(),
                });
            }
            name => parts.push(name.to_vec()),
        }
    }
    Ok(parts)
}

/// The arena index of a tar member's directory, creating missing ones.
fn tar_dirs(
    arena: &mut Arena,
    by_path: &mut HashMap<Vec<Vec<u8>>, usize>,
    dirs: &[Vec<u8>],
) -> usize {
    let mut at = 0;
    for depth in 1..=dirs.len() {
        let key = dirs[..depth].to_vec();
        at = match by_path.get(&key) {
            Some(&existing) => existing,
            None => {
                let node = synthetic_dir(dirs[depth - 1].clone());
                let added = arena.add(at, node);
                by_path.insert(key, added);
                added
            }
        };
    }
    at
}
