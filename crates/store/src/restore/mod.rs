//! Restoring: to a directory, with every core writing file contents at
//! their offsets, or as a tar stream. Every chunk is checked against its
//! BLAKE3 id as it is read; a damaged chunk fails only the files that need it.
//!
//! A restore to a directory never follows a link it did not make: it opens
//! the target once, then every directory with `openat(O_NOFOLLOW |
//! O_DIRECTORY)` from its parent's descriptor, and does everything else
//! relative to those descriptors: files are made with `O_CREAT | O_EXCL |
//! O_NOFOLLOW` (whatever was in their place removed first, so a planted hard
//! link is never written through), their metadata set on their own
//! descriptors, links and nodes made with `symlinkat`, `linkat` and
//! `mknodat`, and each directory's metadata set through its own descriptor
//! at the end. Descriptors are not held for the whole restore (a snapshot
//! may have more directories than a process may open files): a directory is
//! opened again from the target, component by component, and must be the
//! very directory (device and inode) the restore made or checked, so a
//! directory swapped for a link or another directory mid-restore fails the
//! entries under it and nothing is written elsewhere.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::thread;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, fstatat,
    futimens, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use crate::ChunkId;
use crate::backup::Progress;
use crate::error::{IoContext, Result, StoreError};
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind};

/// Files of more chunks than this are split among workers.
const CHUNKS_PER_UNIT: usize = 16;

/// What a restore keeps of what the snapshot recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Owners, setuid/setgid bits, device nodes and FIFOs as the snapshot
    /// recorded them. Off (the default) for restores onto another host or
    /// the controller: a compromised host's snapshot must not plant its
    /// setuid-root binaries or device nodes elsewhere.
    pub keep_privileges: bool,
}

/// What a restore did not restore as the snapshot recorded it, because
/// [`RestoreOptions::keep_privileges`] was off (or, for owners, because the
/// restore did not run as root).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Files (directories included) whose setuid/setgid bits were cleared.
    pub setid: u64,
    /// Character and block devices skipped.
    pub devices: u64,
    /// FIFOs skipped.
    pub fifos: u64,
    /// Owners were not restored, and some entry's recorded owner differs
    /// from the user and group the restore ran as. Always false for a tar
    /// stream, which carries the recorded owners for its reader to apply.
    pub owners: bool,
}

impl Dropped {
    /// Whether anything was dropped.
    pub fn any(&self) -> bool {
        self.setid > 0 || self.devices > 0 || self.fifos > 0 || self.owners
    }
}

#[derive(Debug, Default)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Entries that could not be restored, with the reason.
    pub failed: Vec<(String, String)>,
    /// With [`Store::restore_to_tar_hashed`]: each regular file's path in
    /// the stream and the SHA-256 of its content, for checking what landed.
    /// Paths are raw bytes, as the stream names them.
    pub digests: Vec<(Vec<u8>, String)>,
    /// What was not restored as recorded (see [`RestoreOptions`]).
    pub dropped: Dropped,
}

/// The permission bits to restore `node` with, or `None` when it is not
/// restored at all; counts what is dropped.
fn admitted_mode(node: &Node, options: RestoreOptions, dropped: &mut Dropped) -> Option<u32> {
    let mode = node.mode & 0o7777;
    if options.keep_privileges {
        return Some(mode);
    }
    match node.kind {
        NodeKind::Chardev | NodeKind::Blockdev => {
            dropped.devices += 1;
            None
        }
        NodeKind::Fifo => {
            dropped.fifos += 1;
            None
        }
        NodeKind::File | NodeKind::Dir if mode & 0o6000 != 0 => {
            dropped.setid += 1;
            Some(mode & !0o6000)
        }
        _ => Some(mode),
    }
}

impl Store {
    /// The node at `path` in a snapshot (`/` is the whole snapshot, as a
    /// directory without a name).
    pub fn node_at(&self, snapshot: &SnapshotEntry, path: &str) -> Result<Node> {
        let mut node = root_node(snapshot.snapshot.tree);
        let mut packs = PackFiles::default();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let missing = || StoreError::NoSuchPath {
                snapshot: snapshot.short_id().to_string(),
                path: path.to_string(),
            };
            let subtree = node.subtree.ok_or_else(missing)?;
            let tree = self.load_tree(subtree, &mut packs)?;
            node = tree.find(part.as_bytes()).cloned().ok_or_else(missing)?;
        }
        Ok(node)
    }

    /// Restores `path` of a snapshot into the directory `target`: the whole
    /// snapshot lands with its full paths, a sub-path under its own name.
    ///
    /// `target` itself is created if missing and opened as named (links in
    /// it followed: it is the technician's choice); below it, nothing is
    /// followed. A directory of the snapshot that is a symbolic link at the
    /// target is refused with everything under it.
    pub fn restore_to_dir(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        target: &Path,
        threads: usize,
        progress: &Progress,
        options: RestoreOptions,
    ) -> Result<RestoreOutcome> {
        let node = self.node_at(snapshot, path)?;
        fs::create_dir_all(target).at("creating", target)?;
        let target_fd = openat(
            AT_FDCWD,
            target,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .at("opening", target)?;
        let identity = fstat(&target_fd)
            .map(identity_of)
            .map_err(io::Error::from)
            .at("reading", target)?;
        let mut plan = Plan {
            target: target_fd,
            dirs: vec![PlannedDir {
                parent: 0,
                name: Vec::new(),
                identity,
                path: target.to_path_buf(),
                meta: None,
            }],
            chown: options.keep_privileges && nix::unistd::geteuid().is_root(),
            me: (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
            options,
            files: Vec::new(),
            others: Vec::new(),
            hard_links: Vec::new(),
            first_names: HashMap::new(),
            failed: Vec::new(),
            failed_files: 0,
            bytes: 0,
            dropped: Dropped::default(),
        };
        let top = plan.target.try_clone().at("opening", target)?;
        if node.name.is_empty() {
            self.plan_dir(&node, 0, top.as_fd(), &mut plan)?;
        } else {
            self.plan_node(node, 0, top.as_fd(), &mut plan)?;
        }
        drop(top);
        progress
            .files_total
            .store(plan.files.len() as u64, Ordering::Relaxed);
        progress.bytes_total.store(
            plan.files.iter().map(|f| f.node.size).sum(),
            Ordering::Relaxed,
        );
        let threads = if threads == 0 {
            thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        #[cfg(test)]
        tests::swap::between_planning_and_writing();
        self.write_contents(&mut plan, threads, progress);
        finish_entries(&mut plan);
        Ok(RestoreOutcome {
            files: plan.files.len() as u64 - plan.failed_files,
            dirs: plan.dirs.len() as u64 - 1,
            bytes: plan.bytes,
            failed: plan.failed,
            digests: Vec::new(),
            dropped: plan.dropped,
        })
    }

    /// Plans the entries of `dir`, whose place is directory number `at`,
    /// open as `fd`.
    fn plan_dir(&self, dir: &Node, at: usize, fd: BorrowedFd, plan: &mut Plan) -> Result<()> {
        let Some(subtree) = dir.subtree else {
            return Ok(());
        };
        let tree = self.load_tree(subtree, &mut PackFiles::default())?;
        for node in tree.nodes {
            self.plan_node(node, at, fd, plan)?;
        }
        Ok(())
    }

    fn plan_node(
        &self,
        node: Node,
        parent: usize,
        parent_fd: BorrowedFd,
        plan: &mut Plan,
    ) -> Result<()> {
        let parent_path = &plan.dirs[parent].path;
        if !node.has_safe_name() {
            let shown = parent_path.join(String::from_utf8_lossy(&node.name).as_ref());
            plan.fail(
                &shown,
                StoreError::EscapingPath {
                    name: node.name_lossy(),
                },
            );
            return Ok(());
        }
        let place = Place {
            dir: parent,
            path: parent_path.join(OsStr::from_bytes(&node.name)),
            name: node.name.clone(),
        };
        if node.kind == NodeKind::File
            && node.links > 1
            && let Some(first) = plan.first_names.get(&(node.device, node.inode))
        {
            // Another name of a file already planned: linked once it is in.
            plan.hard_links.push((place, first.clone()));
            return Ok(());
        }
        let Some(mode) = admitted_mode(&node, plan.options, &mut plan.dropped) else {
            return Ok(());
        };
        if node.kind == NodeKind::Socket {
            // A socket belongs to the program that made it; nothing to restore.
            return Ok(());
        }
        if !plan.chown && (node.uid, node.gid) != plan.me {
            plan.dropped.owners = true;
        }
        match node.kind {
            NodeKind::Dir => {
                let fd = match enter_dir(parent_fd, &node.name) {
                    Ok(fd) => fd,
                    Err(err) => {
                        plan.fail(&place.path, err);
                        return Ok(());
                    }
                };
                let identity = match fstat(&fd) {
                    Ok(stat) => identity_of(stat),
                    Err(err) => {
                        plan.fail(&place.path, io::Error::from(err));
                        return Ok(());
                    }
                };
                let index = plan.dirs.len();
                plan.dirs.push(PlannedDir {
                    parent,
                    name: place.name,
                    identity,
                    path: place.path,
                    meta: None,
                });
                self.plan_dir(&node, index, fd.as_fd(), plan)?;
                plan.dirs[index].meta = Some((node, mode));
            }
            NodeKind::File => {
                if node.links > 1 {
                    plan.first_names
                        .insert((node.device, node.inode), place.clone());
                }
                plan.files.push(PlannedFile::new(place, node, mode));
            }
            _ => plan.others.push((place, node, mode)),
        }
        Ok(())
    }

    /// Writes every file's content; small files are one unit of work each,
    /// large ones are cut into runs of chunks written at their offsets.
    fn write_contents(&self, plan: &mut Plan, threads: usize, progress: &Progress) {
        let mut units = Vec::new();
        let mut walker = Walker::new(&plan.target, &plan.dirs);
        for (number, file) in plan.files.iter_mut().enumerate() {
            if file.node.content.len() <= CHUNKS_PER_UNIT {
                units.push(Unit {
                    file: number,
                    first: 0,
                    whole: true,
                });
                continue;
            }
            let made = walker.open(file.place.dir).and_then(|dir| {
                let made = create_file(dir, &file.place.name, file.node.size)
                    .at("creating", &file.place.path)?;
                let stat = fstat(&made)
                    .map_err(io::Error::from)
                    .at("reading", &file.place.path)?;
                Ok(identity_of(stat))
            });
            match made {
                Ok(identity) => file.identity = Some(identity),
                Err(err) => {
                    plan.failed_files += 1;
                    plan.failed
                        .push((file.place.path.display().to_string(), err.to_string()));
                    continue;
                }
            }
            units.extend(
                (0..file.node.content.len())
                    .step_by(CHUNKS_PER_UNIT)
                    .map(|first| Unit {
                        file: number,
                        first,
                        whole: false,
                    }),
            );
        }
        drop(walker);
        let next = Mutex::new(units.into_iter());
        let failures = Mutex::new(HashMap::<usize, String>::new());
        let bytes = std::sync::atomic::AtomicU64::new(0);
        let (files, dirs, target, chown) = (&plan.files, &plan.dirs, &plan.target, plan.chown);
        thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut packs = PackFiles::default();
                    let mut walker = Walker::new(target, dirs);
                    loop {
                        let Some(unit) = next.lock().expect("not poisoned").next() else {
                            break;
                        };
                        let file = &files[unit.file];
                        match self.write_unit(&unit, file, &mut walker, &mut packs, chown) {
                            Ok(written) => {
                                bytes.fetch_add(written, Ordering::Relaxed);
                                progress.bytes_done.fetch_add(written, Ordering::Relaxed);
                                if unit.whole {
                                    progress.files_done.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(err) => {
                                failures
                                    .lock()
                                    .expect("not poisoned")
                                    .entry(unit.file)
                                    .or_insert_with(|| err.to_string());
                            }
                        }
                    }
                });
            }
        });
        plan.bytes = bytes.into_inner();
        let failures = failures.into_inner().expect("not poisoned");
        let mut walker = Walker::new(&plan.target, &plan.dirs);
        for (number, file) in plan.files.iter().enumerate() {
            let shown = || file.place.path.display().to_string();
            match failures.get(&number) {
                Some(err) => {
                    plan.failed_files += 1;
                    plan.failed.push((shown(), err.clone()));
                }
                None => {
                    let Some(identity) = file.identity else {
                        continue;
                    };
                    let done = walker
                        .open(file.place.dir)
                        .and_then(|dir| open_made(dir, &file.place, identity))
                        .and_then(|made| {
                            set_metadata(&made, &file.node, file.mode, plan.chown)
                                .at("setting metadata of", &file.place.path)
                        });
                    if let Err(err) = done {
                        plan.failed.push((shown(), err.to_string()));
                    }
                }
            }
        }
    }

    fn write_unit(
        &self,
        unit: &Unit,
        file: &PlannedFile,
        walker: &mut Walker,
        packs: &mut PackFiles,
        chown: bool,
    ) -> Result<u64> {
        let (place, node) = (&file.place, &file.node);
        let dir = walker.open(place.dir)?;
        let out = if unit.whole {
            create_file(dir, &place.name, node.size).at("creating", &place.path)?
        } else {
            let identity = file.identity.ok_or_else(|| StoreError::Io {
                action: "opening",
                path: place.path.clone(),
                error: io::Error::other("the file was never made"),
            })?;
            open_made(dir, place, identity)?
        };
        let chunks = &node.content[unit.first..];
        let chunks = &chunks[..chunks.len().min(CHUNKS_PER_UNIT)];
        let mut offset = self.offset_of(node, unit.first)?;
        let mut written = 0;
        for &id in chunks {
            let data = self.read_chunk(id, packs)?;
            out.write_all_at(&data, offset).at("writing", &place.path)?;
            offset += data.len() as u64;
            written += data.len() as u64;
        }
        if unit.whole {
            set_metadata(&out, node, file.mode, chown).at("setting metadata of", &place.path)?;
        }
        Ok(written)
    }

    /// Where chunk number `first` of a file starts: the sum of the
    /// plaintext sizes before it, from the index.
    fn offset_of(&self, node: &Node, first: usize) -> Result<u64> {
        node.content[..first]
            .iter()
            .map(|&id| self.raw_len(id))
            .sum()
    }

    /// Restores `path` of a snapshot as a tar stream; sub-paths appear under
    /// their own name, the whole snapshot with its full paths. Without
    /// [`RestoreOptions::keep_privileges`], modes lose their setuid/setgid
    /// bits and device nodes and FIFOs are left out of the stream; owners
    /// are in it as recorded.
    pub fn restore_to_tar(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
        options: RestoreOptions,
    ) -> Result<RestoreOutcome> {
        self.tar_of(snapshot, path, out, false, options)
    }

    /// As [`Store::restore_to_tar`], with the SHA-256 of every regular
    /// file's content in the outcome's `digests`.
    pub fn restore_to_tar_hashed(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
        options: RestoreOptions,
    ) -> Result<RestoreOutcome> {
        self.tar_of(snapshot, path, out, true, options)
    }

    fn tar_of(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
        hashed: bool,
        options: RestoreOptions,
    ) -> Result<RestoreOutcome> {
        let node = self.node_at(snapshot, path)?;
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        let mut outcome = RestoreOutcome::default();
        let mut tar = TarWriter {
            store: self,
            builder,
            packs: PackFiles::default(),
            first_names: HashMap::new(),
            outcome: &mut outcome,
            hashed,
            options,
        };
        if node.name.is_empty() {
            tar.dir_entries(&node, Path::new(""))?;
        } else {
            tar.entry(&node, Path::new(""))?;
        }
        tar.builder.finish().at("writing", "the tar stream")?;
        Ok(outcome)
    }
}

fn root_node(tree: ChunkId) -> Node {
    Node {
        name: Vec::new(),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        size: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        device: 0,
        links: 1,
        target: None,
        rdev: None,
        content: Vec::new(),
        subtree: Some(tree),
    }
}

/// A directory's device and inode: what it is, whatever its name.
fn identity_of(stat: FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

/// Where an entry goes: a name in a planned directory; `path` is for
/// messages only, never opened.
#[derive(Debug, Clone)]
struct Place {
    dir: usize,
    name: Vec<u8>,
    path: PathBuf,
}

/// A directory the restore made or checked.
struct PlannedDir {
    /// The directory it is in (the target, number 0, is its own parent).
    parent: usize,
    name: Vec<u8>,
    /// Device and inode when it was made or checked.
    identity: (u64, u64),
    path: PathBuf,
    /// Its node and mode, set once everything under it is planned; `None`
    /// for the target, whose metadata is not the snapshot's.
    meta: Option<(Node, u32)>,
}

struct PlannedFile {
    place: Place,
    node: Node,
    mode: u32,
    /// Device and inode of a file written in several units, once made.
    identity: Option<(u64, u64)>,
}

impl PlannedFile {
    fn new(place: Place, node: Node, mode: u32) -> Self {
        Self {
            place,
            node,
            mode,
            identity: None,
        }
    }
}

struct Plan {
    /// The target directory, open for the whole restore.
    target: OwnedFd,
    /// Every directory in the order planned, parents before children; the
    /// target is number 0.
    dirs: Vec<PlannedDir>,
    files: Vec<PlannedFile>,
    others: Vec<(Place, Node, u32)>,
    hard_links: Vec<(Place, Place)>,
    first_names: HashMap<(u64, u64), Place>,
    failed: Vec<(String, String)>,
    failed_files: u64,
    bytes: u64,
    options: RestoreOptions,
    /// Whether owners are restored: with keep_privileges, as root.
    chown: bool,
    /// The user and group the restore runs as.
    me: (u32, u32),
    dropped: Dropped,
}

impl Plan {
    fn fail(&mut self, path: &Path, err: impl ToString) {
        self.failed
            .push((path.display().to_string(), err.to_string()));
    }
}

struct Unit {
    file: usize,
    first: usize,
    whole: bool,
}

/// Opens planned directories again from the target, one component at a
/// time without following links, each checked to be the directory that
/// was planned; keeps the last chain open, as consecutive entries mostly
/// share their directory.
struct Walker<'a> {
    target: &'a OwnedFd,
    dirs: &'a [PlannedDir],
    chain: Vec<(usize, OwnedFd)>,
}

impl<'a> Walker<'a> {
    fn new(target: &'a OwnedFd, dirs: &'a [PlannedDir]) -> Self {
        Self {
            target,
            dirs,
            chain: Vec::new(),
        }
    }

    /// Directory number `index`, open.
    fn open(&mut self, index: usize) -> Result<BorrowedFd<'_>> {
        let mut wanted = Vec::new();
        let mut at = index;
        while at != 0 {
            wanted.push(at);
            at = self.dirs[at].parent;
        }
        wanted.reverse();
        let kept = self
            .chain
            .iter()
            .zip(&wanted)
            .take_while(|((open, _), want)| open == *want)
            .count();
        self.chain.truncate(kept);
        for &number in &wanted[kept..] {
            let dir = &self.dirs[number];
            let parent = self
                .chain
                .last()
                .map_or(self.target.as_fd(), |(_, fd)| fd.as_fd());
            let fd = reopen_dir(parent, dir).at("opening", &dir.path)?;
            self.chain.push((number, fd));
        }
        Ok(self
            .chain
            .last()
            .map_or(self.target.as_fd(), |(_, fd)| fd.as_fd()))
    }
}

fn not_the_planned_directory() -> io::Error {
    io::Error::other(
        "not the directory the restore made or checked (replaced by a link or \
         something else during the restore); nothing is written through it",
    )
}

/// `dir` under `parent` as planned: never through a link, and the same
/// directory (device and inode) as when it was made or checked.
fn reopen_dir(parent: BorrowedFd, dir: &PlannedDir) -> io::Result<OwnedFd> {
    let fd = open_dir_at(parent, &dir.name).map_err(|err| match err {
        Errno::ELOOP | Errno::ENOTDIR => not_the_planned_directory(),
        other => other.into(),
    })?;
    if identity_of(fstat(&fd)?) != dir.identity {
        return Err(not_the_planned_directory());
    }
    Ok(fd)
}

fn open_dir_at(parent: BorrowedFd, name: &[u8]) -> nix::Result<OwnedFd> {
    openat(
        parent,
        OsStr::from_bytes(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn is_kind(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == kind
}

/// Makes `name` under `parent` a directory and opens it: an existing
/// directory is used, a symbolic link is refused, anything else is
/// replaced. A new directory is private (0700) until its own metadata is
/// set at the end of the restore.
fn enter_dir(parent: BorrowedFd, name: &[u8]) -> io::Result<OwnedFd> {
    let name_os = OsStr::from_bytes(name);
    match fstatat(parent, name_os, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if is_kind(&stat, SFlag::S_IFDIR) => {}
        Ok(stat) if is_kind(&stat, SFlag::S_IFLNK) => {
            return Err(io::Error::other(
                "a symbolic link where the snapshot has a directory; nothing was \
                 written under it, because a restore never writes through a link; \
                 remove the link or restore to another directory",
            ));
        }
        Ok(_) => {
            unlinkat(parent, name_os, UnlinkatFlags::NoRemoveDir)?;
            mkdirat(parent, name_os, Mode::S_IRWXU)?;
        }
        Err(Errno::ENOENT) => mkdirat(parent, name_os, Mode::S_IRWXU)?,
        Err(err) => return Err(err.into()),
    }
    open_dir_at(parent, name).map_err(|err| match err {
        Errno::ELOOP | Errno::ENOTDIR => not_the_planned_directory(),
        other => other.into(),
    })
}

/// Symlinks, devices and hard links once contents are in; directory
/// metadata last, children before their parents, so writing into a
/// directory does not undo its times and a parent's mode does not keep
/// its children from being reached.
fn finish_entries(plan: &mut Plan) {
    let mut walker = Walker::new(&plan.target, &plan.dirs);
    let mut failed = Vec::new();
    for (place, node, mode) in std::mem::take(&mut plan.others) {
        let made = walker.open(place.dir).and_then(|dir| {
            make_special(dir, &place.name, &node, mode, plan.chown).at("making", &place.path)
        });
        if let Err(err) = made {
            failed.push((place.path.display().to_string(), err.to_string()));
        }
    }
    let mut firsts = Walker::new(&plan.target, &plan.dirs);
    for (place, first) in std::mem::take(&mut plan.hard_links) {
        let made = firsts.open(first.dir).and_then(|from| {
            let into = walker.open(place.dir)?;
            clear(into, &place.name)
                .and_then(|()| {
                    linkat(
                        from,
                        OsStr::from_bytes(&first.name),
                        into,
                        OsStr::from_bytes(&place.name),
                        AtFlags::empty(),
                    )
                    .map_err(io::Error::from)
                })
                .at("linking", &place.path)
        });
        if let Err(err) = made {
            failed.push((place.path.display().to_string(), err.to_string()));
        }
    }
    for (number, dir) in plan.dirs.iter().enumerate().rev() {
        let Some((node, mode)) = &dir.meta else {
            continue;
        };
        let done = walker.open(number).and_then(|fd| {
            set_metadata(fd, node, *mode, plan.chown).at("setting metadata of", &dir.path)
        });
        if let Err(err) = done {
            failed.push((dir.path.display().to_string(), err.to_string()));
        }
    }
    drop((walker, firsts));
    plan.failed.extend(failed);
}

/// Removes a non-directory `name` under `dir`; a directory there is an
/// error, nothing there is fine.
fn clear(dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    match unlinkat(dir, OsStr::from_bytes(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Err(err) => Err(err.into()),
    }
}

/// A new file `name` under `dir`, of `size` bytes, private until its
/// metadata is set: whatever was there is removed first and the file made
/// with `O_EXCL`, so neither a link nor another name of someone else's file
/// is ever written through.
fn create_file(dir: BorrowedFd, name: &[u8], size: u64) -> io::Result<File> {
    clear(dir, name)?;
    let fd = openat(
        dir,
        OsStr::from_bytes(name),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )?;
    let file = File::from(fd);
    file.set_len(size)?;
    Ok(file)
}

/// The file this restore made at `place` (device and inode as made), open
/// for writing.
fn open_made(dir: BorrowedFd, place: &Place, identity: (u64, u64)) -> Result<File> {
    let opened = openat(
        dir,
        OsStr::from_bytes(&place.name),
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .and_then(|fd| {
        let file = File::from(fd);
        if identity_of(fstat(&file)?) == identity {
            Ok(file)
        } else {
            Err(io::Error::other(
                "not the file the restore made (replaced during the restore)",
            ))
        }
    });
    opened.at("opening", &place.path)
}

fn mtime_of(node: &Node) -> TimeSpec {
    TimeSpec::new(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000),
    )
}

/// Owner (when `chown`), mode and times of an open file or directory;
/// owner first, as chown clears setuid bits.
fn set_metadata(fd: impl AsFd, node: &Node, mode: u32, chown: bool) -> io::Result<()> {
    let fd = fd.as_fd();
    if chown {
        fchown(
            fd,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
        )?;
    }
    fchmod(fd, Mode::from_bits_truncate(mode))?;
    let mtime = mtime_of(node);
    futimens(fd, &mtime, &mtime)?;
    Ok(())
}

/// A symlink, device node or FIFO `name` under `dir`, with its metadata.
/// The entry made is opened as a path (`O_PATH | O_NOFOLLOW`: nothing is
/// followed, no device opened) and checked to be of the kind made, and its
/// owner and mode are set through that descriptor, so an entry swapped in
/// meanwhile is never changed.
fn make_special(
    dir: BorrowedFd,
    name: &[u8],
    node: &Node,
    mode: u32,
    chown: bool,
) -> io::Result<()> {
    let name_os = OsStr::from_bytes(name);
    clear(dir, name)?;
    let kind = match node.kind {
        NodeKind::Symlink => {
            let target = node.target.clone().unwrap_or_default();
            symlinkat(OsStr::from_bytes(&target), dir, name_os)?;
            SFlag::S_IFLNK
        }
        NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
            let kind = match node.kind {
                NodeKind::Fifo => SFlag::S_IFIFO,
                NodeKind::Chardev => SFlag::S_IFCHR,
                _ => SFlag::S_IFBLK,
            };
            // Owner-only until its owner is set; its mode is set after.
            let private = Mode::from_bits_truncate(mode & 0o700);
            mknodat(dir, name_os, kind, private, node.rdev.unwrap_or(0))?;
            kind
        }
        NodeKind::Socket | NodeKind::File | NodeKind::Dir => unreachable!("planned elsewhere"),
    };
    let made = openat(
        dir,
        name_os,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if !is_kind(&fstat(&made)?, kind) {
        return Err(io::Error::other("replaced while the restore made it"));
    }
    if chown {
        fchownat(
            &made,
            "",
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::AT_EMPTY_PATH,
        )?;
    }
    // The descriptor's own name in /proc reaches exactly the entry made
    // (a symlink's times are its own, never its target's).
    let itself = format!("/proc/self/fd/{}", made.as_raw_fd());
    let mtime = mtime_of(node);
    if kind != SFlag::S_IFLNK {
        fchmodat(
            AT_FDCWD,
            itself.as_str(),
            Mode::from_bits_truncate(mode),
            FchmodatFlags::FollowSymlink,
        )?;
    }
    utimensat(
        AT_FDCWD,
        itself.as_str(),
        &mtime,
        &mtime,
        UtimensatFlags::FollowSymlink,
    )?;
    Ok(())
}

mod stream;
#[cfg(test)]
mod tests;

use stream::TarWriter;
