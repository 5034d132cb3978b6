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

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use chrono::Utc;
use crossbeam_channel::unbounded;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat};
use nix::libc;
use nix::sys::stat::{FileStat, Mode, fstat, fstatat, lstat};

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
        self.backup_local(paths, options, progress, &|_| {})
    }

    /// [`Store::backup_paths`], calling `before_open` with each path the
    /// walk has looked at just before it is opened.
    fn backup_local(
        &mut self,
        paths: &[PathBuf],
        options: &BackupOptions,
        progress: &Progress,
        before_open: &(dyn Fn(&Path) + Sync),
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
                    scope.spawn(move || read_files(jobs, done, sink, progress, before_open));
                }
                drop(done_tx);
                let mut scan = Scan::new(store, parent_tree, job_tx, progress, before_open);
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

/// A file to read, as the walk saw it: its arena index, its directory, its
/// path (for messages; the last component is its name in `dir`), size and
/// identity.
struct Job {
    at: usize,
    dir: Arc<WalkedDir>,
    path: PathBuf,
    size: u64,
    device: u64,
    inode: u64,
}

/// A file read: its arena index, path, and chunk ids and size, or the error.
type Done = (usize, PathBuf, io::Result<(Vec<ChunkId>, u64)>);

/// Files at least this large have their chunks compressed by the pool, so
/// a big file read last still uses every core.
const POOLED_FILE: u64 = 4 << 20;

/// Directories are opened by one name from their parent's descriptor and
/// never through a link, so no path is looked up again from `/`. Those
/// passed through are opened as paths only: like a path lookup, that needs
/// search permission, where reading (to list one) needs read permission.
const PASS_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);
const LIST_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Files likewise; without waiting, as opening a FIFO to read waits for a
/// writer (reads of a regular file never wait, whatever the flag), and
/// without making a terminal the controlling one.
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_CLOEXEC);

/// Opens `name` in `dir` if it is still what the walk saw there: of file
/// type `kind` (`S_IFDIR`, `S_IFREG`) with that device and inode.
fn open_seen(
    dir: impl AsFd,
    name: &[u8],
    flags: OFlag,
    kind: libc::mode_t,
    (device, inode): (u64, u64),
) -> io::Result<OwnedFd> {
    let fd = openat(dir, name, flags, Mode::empty()).map_err(|err| match err {
        // A link, or no longer a directory, or a socket: not what was seen.
        Errno::ELOOP | Errno::ENOTDIR | Errno::ENXIO => changed(),
        err => err.into(),
    })?;
    let stat = fstat(&fd)?;
    if stat.st_mode & libc::S_IFMT == kind && stat.st_dev == device && stat.st_ino == inode {
        Ok(fd)
    } else {
        Err(changed())
    }
}

fn changed() -> io::Error {
    io::Error::other("changed during the backup")
}

/// A directory as the walk found it. Readers open it again by the same
/// names from `/`, each from the last, and check each is what the walk
/// saw, so a directory swapped for a link or another directory after the
/// walk listed it is never read through.
struct WalkedDir {
    parent: Option<Arc<WalkedDir>>,
    /// Its name in its parent; `/` for the root.
    name: Vec<u8>,
    device: u64,
    inode: u64,
}

impl WalkedDir {
    fn reopen(&self, parent: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        let seen = (self.device, self.inode);
        open_seen(parent, &self.name, PASS_FLAGS, libc::S_IFDIR, seen)
    }

    /// The directories from `/` down to this one.
    fn chain(self: &Arc<Self>) -> Vec<&Arc<Self>> {
        let mut chain = vec![self];
        let mut at = self;
        while let Some(parent) = &at.parent {
            chain.push(parent);
            at = parent;
        }
        chain.reverse();
        chain
    }
}

/// A directory the walk has open, and how readers find it again.
struct OpenDir {
    fd: OwnedFd,
    walked: Arc<WalkedDir>,
}

impl OpenDir {
    fn root() -> io::Result<Self> {
        let fd = openat(AT_FDCWD, "/", PASS_FLAGS, Mode::empty())?;
        let stat = fstat(&fd)?;
        let walked = WalkedDir {
            parent: None,
            name: b"/".to_vec(),
            device: stat.st_dev,
            inode: stat.st_ino,
        };
        Ok(Self {
            fd,
            walked: Arc::new(walked),
        })
    }

    /// The directory the walk saw as `node` in this one, if it still is,
    /// opened with `flags` (to list it or to pass through).
    fn child(&self, node: &Node, flags: OFlag) -> io::Result<Self> {
        let seen = (node.device, node.inode);
        let fd = open_seen(&self.fd, &node.name, flags, libc::S_IFDIR, seen)?;
        let walked = WalkedDir {
            parent: Some(Arc::clone(&self.walked)),
            name: node.name.clone(),
            device: node.device,
            inode: node.inode,
        };
        Ok(Self {
            fd,
            walked: Arc::new(walked),
        })
    }

    /// The names in this directory (opened to list it), sorted.
    fn names(&self) -> io::Result<Vec<Vec<u8>>> {
        let dir = Dir::from_fd(self.fd.try_clone()?)?;
        let mut names: Vec<Vec<u8>> = dir
            .into_iter()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_bytes().to_vec()))
            .filter(|name| name != b"." && name != b"..")
            .collect();
        names.sort();
        Ok(names)
    }

    fn stat(&self, name: &[u8]) -> io::Result<FileStat> {
        Ok(fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
    }
}

/// The directories a reader has open: those from `/` down to its last
/// file's, which the next file most often shares. A reader holds one
/// descriptor per level, however many files wait to be read.
#[derive(Default)]
struct OpenChain(Vec<(Arc<WalkedDir>, OwnedFd)>);

impl OpenChain {
    /// Opens `job`'s file if it is still the one the walk saw.
    fn open(&mut self, job: &Job) -> io::Result<File> {
        let name = job.path.file_name().unwrap_or_default().as_bytes();
        let seen = (job.device, job.inode);
        let dir = self.reach(&job.dir)?;
        open_seen(dir, name, FILE_FLAGS, libc::S_IFREG, seen).map(File::from)
    }

    fn reach(&mut self, dir: &Arc<WalkedDir>) -> io::Result<BorrowedFd<'_>> {
        let there = self
            .0
            .last()
            .is_some_and(|(open, _)| Arc::ptr_eq(open, dir));
        if !there {
            self.descend(dir)?;
        }
        let (_, fd) = self.0.last().expect("the chain ends at `dir`");
        Ok(fd.as_fd())
    }

    /// Keeps the directories open that lead to `dir` too, opens the rest.
    fn descend(&mut self, dir: &Arc<WalkedDir>) -> io::Result<()> {
        let chain = dir.chain();
        let kept = self
            .0
            .iter()
            .zip(&chain)
            .take_while(|((open, _), wanted)| Arc::ptr_eq(open, wanted))
            .count();
        self.0.truncate(kept);
        for step in &chain[kept..] {
            let parent = self.0.last().map_or(AT_FDCWD, |(_, fd)| fd.as_fd());
            let fd = step.reopen(parent)?;
            self.0.push((Arc::clone(step), fd));
        }
        Ok(())
    }
}

/// One reader: chunks, hashes and (for small files) compresses whole files.
fn read_files(
    jobs: crossbeam_channel::Receiver<Job>,
    done: crossbeam_channel::Sender<Done>,
    sink: &Sink<'_>,
    progress: &Progress,
    before_open: &(dyn Fn(&Path) + Sync),
) {
    let mut chunker = sink.chunker();
    let mut compressor = sink.compressor();
    let mut dirs = OpenChain::default();
    for job in jobs {
        if sink.failed() {
            break;
        }
        let inline = (job.size < POOLED_FILE).then_some(&mut compressor);
        before_open(&job.path);
        let read = dirs
            .open(&job)
            .and_then(|file| chunk_stream(file, &mut chunker, sink, progress, inline));
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        let _ = done.send((job.at, job.path, read));
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
    /// Called with each directory about to be listed (test support).
    before_open: &'s (dyn Fn(&Path) + Sync),
}

impl<'s> Scan<'s> {
    fn new(
        store: &'s Store,
        parent_tree: Option<Tree>,
        jobs: crossbeam_channel::Sender<Job>,
        progress: &'s Progress,
        before_open: &'s (dyn Fn(&Path) + Sync),
    ) -> Self {
        let mut names = Names::default();
        let root = match lstat("/") {
            Ok(stat) => node_from(Vec::new(), &stat, &mut names),
            Err(_) => synthetic_dir(Vec::new()),
        };
        Self {
            progress,
            jobs: Some(jobs),
            arena: Arena::root(root),
            changes: Changes::new(store, parent_tree),
            names,
            skipped: Vec::new(),
            before_open,
        }
    }

    /// Adds the directories leading to `path`, then `path` and all below
    /// it, each opened from the last without following links: a link the
    /// user named as `path` is recorded as one, a link on the way to it is
    /// refused.
    fn add_path(&mut self, path: &Path) -> Result<()> {
        let components: Vec<_> = path.components().skip(1).collect();
        let Some((last, leading)) = components.split_last() else {
            return Ok(());
        };
        let mut dir = OpenDir::root().at("opening", "/")?;
        let mut at = 0;
        let mut prefix = PathBuf::from("/");
        for component in leading {
            prefix.push(component);
            let node = self.node_in(&dir, component.as_os_str(), &prefix)?;
            if node.kind == NodeKind::Symlink {
                return Err(StoreError::Setting(format!(
                    "{}: {} is a symbolic link; give the path it leads to",
                    path.display(),
                    prefix.display()
                )));
            }
            let next = dir.child(&node, PASS_FLAGS).at("opening", &prefix)?;
            at = match self.arena.child(at, &node.name) {
                Some(existing) => existing,
                None => self.enter(at, &dir, node, &prefix, false),
            };
            dir = next;
        }
        prefix.push(last);
        let node = self.node_in(&dir, last.as_os_str(), &prefix)?;
        self.enter(at, &dir, node, &prefix, true);
        Ok(())
    }

    fn node_in(&mut self, dir: &OpenDir, name: &OsStr, path: &Path) -> Result<Node> {
        let stat = dir.stat(name.as_bytes()).at("reading", path)?;
        Ok(node_from(name.as_bytes().to_vec(), &stat, &mut self.names))
    }

    /// Records one entry of `dir`; a directory is walked when `recurse` is
    /// set.
    fn enter(
        &mut self,
        parent: usize,
        dir: &OpenDir,
        mut node: Node,
        path: &Path,
        recurse: bool,
    ) -> usize {
        if node.kind == NodeKind::Symlink {
            match readlinkat(&dir.fd, node.name.as_slice()) {
                Ok(target) => node.target = Some(target.into_vec()),
                Err(err) => self.skip(path, &err.into()),
            }
        }
        let is_dir = node.kind == NodeKind::Dir;
        let at = self.arena.add(parent, node);
        if self.changes.compare(&mut self.arena, parent, at) {
            self.queue(at, dir, path);
        }
        if is_dir && recurse {
            (self.before_open)(path);
            match dir.child(&self.arena.nodes[at], LIST_FLAGS) {
                Ok(child) => self.walk(at, child, path),
                Err(err) => self.skip(path, &err),
            }
            self.changes.leave(at);
        }
        at
    }

    /// Hands the file at `at` in `dir` to the readers.
    fn queue(&mut self, at: usize, dir: &OpenDir, path: &Path) {
        let node = &self.arena.nodes[at];
        self.progress.files_total.fetch_add(1, Ordering::Relaxed);
        self.progress
            .bytes_total
            .fetch_add(node.size, Ordering::Relaxed);
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job {
                at,
                dir: Arc::clone(&dir.walked),
                path: path.to_path_buf(),
                size: node.size,
                device: node.device,
                inode: node.inode,
            });
        }
    }

    fn walk(&mut self, at: usize, dir: OpenDir, path: &Path) {
        let names = match dir.names() {
            Ok(names) => names,
            Err(err) => return self.skip(path, &err),
        };
        for name in names {
            let path = path.join(OsStr::from_bytes(&name));
            // Where a walk by paths ended, so this one ends too: its depth,
            // and so its stack and open directories, stay bounded, and a
            // restore could not create what lies deeper.
            if path.as_os_str().len() >= libc::PATH_MAX as usize {
                self.skip(&path, &Errno::ENAMETOOLONG.into());
                continue;
            }
            match dir.stat(&name) {
                Ok(stat) => {
                    let node = node_from(name, &stat, &mut self.names);
                    self.enter(at, &dir, node, &path, true);
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
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

fn node_from(name: Vec<u8>, stat: &FileStat, names: &mut Names) -> Node {
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFCHR => NodeKind::Chardev,
        libc::S_IFBLK => NodeKind::Blockdev,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => NodeKind::File,
    };
    #[allow(clippy::unnecessary_cast)] // nlink_t is u32 on some targets
    let links = stat.st_nlink as u64;
    let (user, group) = (names.user(stat.st_uid), names.group(stat.st_gid));
    let stat = Stat {
        kind,
        mode: stat.st_mode,
        uid: stat.st_uid,
        gid: stat.st_gid,
        size: stat.st_size as u64,
        mtime_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec,
        ctime_ns: stat.st_ctime * 1_000_000_000 + stat.st_ctime_nsec,
        inode: stat.st_ino,
        device: stat.st_dev,
        links,
        rdev: Some(stat.st_rdev),
    };
    stat_node(name, stat, user, group)
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
        before_open: impl Fn(&Path) + Sync,
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
