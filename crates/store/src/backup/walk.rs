//! Backing up local paths: the walk that lists them without following
//! links, and the readers that open each file as the walk saw it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

use crossbeam_channel::unbounded;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat};
use nix::libc;
use nix::sys::stat::{FileStat, Mode, fstat, fstatat, lstat};

use super::{
    Arena, BackupOptions, BackupOutcome, Changes, Progress, Skipped, Stat, absolute_paths,
    chunk_stream, stat_node, synthetic_dir, thread_count,
};
use crate::ChunkId;
use crate::error::{IoContext, Result, StoreError};
use crate::repo::{PackFiles, Store};
use crate::tree::{Node, NodeKind, Tree};
use crate::writer::Sink;

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
    pub(super) fn backup_local(
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
