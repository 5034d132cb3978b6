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

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::thread;

use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fstat};

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
    /// With [`Store::restore_to_tar`]: each regular file's path in the
    /// stream and the SHA-256 of its content, for checking what landed.
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
    /// are in it as recorded. The outcome's `digests` hold the SHA-256 of
    /// every regular file's content as it passed, for checking what landed.
    pub fn restore_to_tar(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
        options: RestoreOptions,
    ) -> Result<RestoreOutcome> {
        self.tar_of(snapshot, path, None, out, options)
    }

    /// As [`Store::restore_to_tar`] of the whole snapshot, with only the
    /// regular files named in `files` (full paths without the leading `/`,
    /// as raw bytes) and the directories holding them: a sample of a
    /// snapshot, for a restore test.
    pub fn restore_files_to_tar(
        &self,
        snapshot: &SnapshotEntry,
        files: &BTreeSet<Vec<u8>>,
        out: impl Write,
        options: RestoreOptions,
    ) -> Result<RestoreOutcome> {
        self.tar_of(snapshot, "/", Some(files), out, options)
    }

    fn tar_of(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        only: Option<&BTreeSet<Vec<u8>>>,
        out: impl Write,
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
            only,
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

mod beneath;
mod stream;
#[cfg(test)]
mod tests;

use beneath::*;
use stream::TarWriter;
