//! Restoring: to a directory, with every core writing file contents at
//! their offsets, or as a tar stream. Every chunk is checked against its
//! BLAKE3 id as it is read; a damaged chunk fails only the files that need it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::thread;

use filetime::FileTime;

use crate::ChunkId;
use crate::backup::Progress;
use crate::error::{IoContext, Result, StoreError};
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind};

/// Files of more chunks than this are split among workers.
const CHUNKS_PER_UNIT: usize = 16;

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
    pub fn restore_to_dir(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        target: &Path,
        threads: usize,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        let node = self.node_at(snapshot, path)?;
        fs::create_dir_all(target).at("creating", target)?;
        let mut plan = Plan::default();
        if node.name.is_empty() {
            self.plan_dir(&node, target, &mut plan)?;
        } else {
            self.plan_node(node, target, &mut plan)?;
        }
        progress
            .files_total
            .store(plan.files.len() as u64, Ordering::Relaxed);
        progress.bytes_total.store(
            plan.files.iter().map(|(_, n)| n.size).sum(),
            Ordering::Relaxed,
        );
        let threads = if threads == 0 {
            thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        self.write_contents(&mut plan, threads, progress);
        finish_entries(&mut plan);
        Ok(RestoreOutcome {
            files: plan.files.len() as u64 - plan.failed_files,
            dirs: plan.dirs.len() as u64,
            bytes: plan.bytes,
            failed: plan.failed,
            digests: Vec::new(),
        })
    }

    fn plan_dir(&self, dir: &Node, at: &Path, plan: &mut Plan) -> Result<()> {
        let Some(subtree) = dir.subtree else {
            return Ok(());
        };
        let tree = self.load_tree(subtree, &mut PackFiles::default())?;
        for node in tree.nodes {
            self.plan_node(node, at, plan)?;
        }
        Ok(())
    }

    fn plan_node(&self, node: Node, parent: &Path, plan: &mut Plan) -> Result<()> {
        if !node.has_safe_name() {
            plan.fail(
                &parent.join(String::from_utf8_lossy(&node.name).as_ref()),
                StoreError::EscapingPath {
                    name: node.name_lossy(),
                },
            );
            return Ok(());
        }
        let path = parent.join(OsStr::from_bytes(&node.name));
        match node.kind {
            NodeKind::Dir => {
                if let Err(err) = ensure_dir(&path) {
                    plan.fail(&path, err);
                    return Ok(());
                }
                self.plan_dir(&node, &path, plan)?;
                plan.dirs.push((path, node));
            }
            NodeKind::File if node.links > 1 => {
                let identity = (node.device, node.inode);
                match plan.first_names.get(&identity) {
                    Some(first) => plan.hard_links.push((path, first.clone())),
                    None => {
                        plan.first_names.insert(identity, path.clone());
                        plan.files.push((path, node));
                    }
                }
            }
            NodeKind::File => plan.files.push((path, node)),
            _ => plan.others.push((path, node)),
        }
        Ok(())
    }

    /// Writes every file's content; small files are one unit of work each,
    /// large ones are cut into runs of chunks written at their offsets.
    fn write_contents(&self, plan: &mut Plan, threads: usize, progress: &Progress) {
        let mut units = Vec::new();
        for (number, (path, node)) in plan.files.iter().enumerate() {
            if node.content.len() <= CHUNKS_PER_UNIT {
                units.push(Unit {
                    file: number,
                    first: 0,
                    whole: true,
                });
                continue;
            }
            if let Err(err) = create_file(path, node.size) {
                plan.failed_files += 1;
                plan.failed
                    .push((path.display().to_string(), err.to_string()));
                continue;
            }
            units.extend(
                (0..node.content.len())
                    .step_by(CHUNKS_PER_UNIT)
                    .map(|first| Unit {
                        file: number,
                        first,
                        whole: false,
                    }),
            );
        }
        let next = Mutex::new(units.into_iter());
        let failures = Mutex::new(HashMap::<usize, String>::new());
        let bytes = std::sync::atomic::AtomicU64::new(0);
        let files = &plan.files;
        thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut packs = PackFiles::default();
                    loop {
                        let Some(unit) = next.lock().expect("not poisoned").next() else {
                            break;
                        };
                        let (path, node) = &files[unit.file];
                        match self.write_unit(&unit, path, node, &mut packs) {
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
        for (number, (path, node)) in plan.files.iter().enumerate() {
            match failures.get(&number) {
                Some(err) => {
                    plan.failed_files += 1;
                    plan.failed.push((path.display().to_string(), err.clone()));
                }
                None if node.content.len() > CHUNKS_PER_UNIT => {
                    if let Err(err) = set_metadata(path, node) {
                        plan.failed
                            .push((path.display().to_string(), err.to_string()));
                    }
                }
                None => {}
            }
        }
    }

    fn write_unit(
        &self,
        unit: &Unit,
        path: &Path,
        node: &Node,
        packs: &mut PackFiles,
    ) -> Result<u64> {
        let file = if unit.whole {
            create_file(path, node.size)?
        } else {
            open_no_follow(path, false).at("opening", path)?
        };
        let chunks = &node.content[unit.first..];
        let chunks = &chunks[..chunks.len().min(CHUNKS_PER_UNIT)];
        let mut offset = self.offset_of(node, unit.first)?;
        let mut written = 0;
        for &id in chunks {
            let data = self.read_chunk(id, packs)?;
            file.write_all_at(&data, offset).at("writing", path)?;
            offset += data.len() as u64;
            written += data.len() as u64;
        }
        if unit.whole {
            drop(file);
            set_metadata(path, node).at("setting metadata of", path)?;
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
    /// their own name, the whole snapshot with its full paths.
    pub fn restore_to_tar(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
    ) -> Result<RestoreOutcome> {
        self.tar_of(snapshot, path, out, false)
    }

    /// As [`Store::restore_to_tar`], with the SHA-256 of every regular
    /// file's content in the outcome's `digests`.
    pub fn restore_to_tar_hashed(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
    ) -> Result<RestoreOutcome> {
        self.tar_of(snapshot, path, out, true)
    }

    fn tar_of(
        &self,
        snapshot: &SnapshotEntry,
        path: &str,
        out: impl Write,
        hashed: bool,
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

#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    others: Vec<(PathBuf, Node)>,
    hard_links: Vec<(PathBuf, PathBuf)>,
    first_names: HashMap<(u64, u64), PathBuf>,
    failed: Vec<(String, String)>,
    failed_files: u64,
    bytes: u64,
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

/// Symlinks, devices and hard links once contents are in; directory
/// metadata last, deepest first, so writing into them does not undo it.
fn finish_entries(plan: &mut Plan) {
    for (path, node) in std::mem::take(&mut plan.others) {
        if let Err(err) = make_special(&path, &node) {
            plan.fail(&path, err);
        }
    }
    for (path, first) in std::mem::take(&mut plan.hard_links) {
        let made = clear(&path).and_then(|()| fs::hard_link(&first, &path));
        if let Err(err) = made {
            plan.fail(&path, err);
        }
    }
    for (path, node) in plan.dirs.iter().rev() {
        if let Err(err) = set_metadata(path, node) {
            plan.failed
                .push((path.display().to_string(), err.to_string()));
        }
    }
}

/// Makes `path` a directory, replacing a file or symlink found there, so a
/// symlink planted in the target cannot redirect the restore elsewhere.
fn ensure_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            fs::create_dir(path)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir(path),
        Err(err) => Err(err),
    }
}

/// Removes a non-directory at `path`; a directory there is an error.
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

fn open_no_follow(path: &Path, create: bool) -> io::Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(create)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn create_file(path: &Path, size: u64) -> Result<fs::File> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && !meta.is_file()
    {
        clear(path).at("replacing", path)?;
    }
    let file = open_no_follow(path, true).at("creating", path)?;
    file.set_len(size).at("sizing", path)?;
    Ok(file)
}

fn make_special(path: &Path, node: &Node) -> io::Result<()> {
    clear(path)?;
    match node.kind {
        NodeKind::Symlink => {
            let target = node.target.clone().unwrap_or_default();
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), path)?;
        }
        NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
            let kind = match node.kind {
                NodeKind::Fifo => nix::sys::stat::SFlag::S_IFIFO,
                NodeKind::Chardev => nix::sys::stat::SFlag::S_IFCHR,
                _ => nix::sys::stat::SFlag::S_IFBLK,
            };
            let mode = nix::sys::stat::Mode::from_bits_truncate(node.mode);
            nix::sys::stat::mknod(path, kind, mode, node.rdev.unwrap_or(0))?;
        }
        // A socket belongs to the program that made it; nothing to restore.
        NodeKind::Socket => return Ok(()),
        NodeKind::File | NodeKind::Dir => unreachable!("planned elsewhere"),
    }
    set_metadata(path, node)
}

/// Ownership (when running as root), mode and mtime; ownership first, as
/// chown clears setuid bits.
fn set_metadata(path: &Path, node: &Node) -> io::Result<()> {
    let mtime = FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?;
    }
    if node.kind == NodeKind::Symlink {
        return filetime::set_symlink_file_times(path, mtime, mtime);
    }
    fs::set_permissions(
        path,
        std::os::unix::fs::PermissionsExt::from_mode(node.mode),
    )?;
    filetime::set_file_times(path, mtime, mtime)
}

struct TarWriter<'a, W: Write> {
    store: &'a Store,
    builder: tar::Builder<W>,
    packs: PackFiles,
    first_names: HashMap<(u64, u64), PathBuf>,
    outcome: &'a mut RestoreOutcome,
    hashed: bool,
}

impl<W: Write> TarWriter<'_, W> {
    fn dir_entries(&mut self, dir: &Node, at: &Path) -> Result<()> {
        let Some(subtree) = dir.subtree else {
            return Ok(());
        };
        let tree = self.store.load_tree(subtree, &mut self.packs)?;
        for node in &tree.nodes {
            self.entry(node, at)?;
        }
        Ok(())
    }

    fn entry(&mut self, node: &Node, parent: &Path) -> Result<()> {
        if !node.has_safe_name() {
            self.outcome.failed.push((
                node.name_lossy(),
                StoreError::EscapingPath {
                    name: node.name_lossy(),
                }
                .to_string(),
            ));
            return Ok(());
        }
        let path = parent.join(OsStr::from_bytes(&node.name));
        let mut header = tar::Header::new_gnu();
        header.set_mode(node.mode);
        header.set_uid(node.uid.into());
        header.set_gid(node.gid.into());
        header.set_mtime(node.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        if let Some(user) = &node.user {
            let _ = header.set_username(user);
        }
        if let Some(group) = &node.group {
            let _ = header.set_groupname(group);
        }
        let io_err = |err| StoreError::Io {
            action: "writing",
            path: "the tar stream".into(),
            error: err,
        };
        match node.kind {
            NodeKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &path, io::empty())
                    .map_err(io_err)?;
                self.outcome.dirs += 1;
                self.dir_entries(node, &path)?;
            }
            NodeKind::File => {
                let identity = (node.device, node.inode);
                if node.links > 1
                    && let Some(first) = self.first_names.get(&identity)
                {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return self
                        .builder
                        .append_link(&mut header, &path, &first)
                        .map_err(io_err);
                }
                if node.links > 1 {
                    self.first_names.insert(identity, path.clone());
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(node.size);
                let reader = ChunkReader {
                    store: self.store,
                    chunks: node.content.iter(),
                    current: io::Cursor::new(Vec::new()),
                    packs: &mut self.packs,
                };
                let mut reader = Hashing {
                    inner: reader,
                    sha256: self.hashed.then(sha2::Sha256::default),
                };
                self.builder
                    .append_data(&mut header, &path, &mut reader)
                    .map_err(io_err)?;
                if let Some(sha256) = reader.sha256 {
                    use sha2::Digest;
                    let digest: String = sha256
                        .finalize()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    self.outcome
                        .digests
                        .push((path.as_os_str().as_bytes().to_vec(), digest));
                }
                self.outcome.files += 1;
                self.outcome.bytes += node.size;
            }
            NodeKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                let target = node.target.clone().unwrap_or_default();
                self.builder
                    .append_link(&mut header, &path, OsStr::from_bytes(&target))
                    .map_err(io_err)?;
            }
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                header.set_entry_type(match node.kind {
                    NodeKind::Fifo => tar::EntryType::Fifo,
                    NodeKind::Chardev => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                let rdev = node.rdev.unwrap_or(0);
                let _ = header.set_device_major(nix::sys::stat::major(rdev) as u32);
                let _ = header.set_device_minor(nix::sys::stat::minor(rdev) as u32);
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &path, io::empty())
                    .map_err(io_err)?;
            }
            NodeKind::Socket => {}
        }
        Ok(())
    }
}

/// A file's content as one reader over its chunks, checked as they come.
/// A reader that hashes what passes through, when asked to.
struct Hashing<R> {
    inner: R,
    sha256: Option<sha2::Sha256>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(sha256) = &mut self.sha256 {
            sha2::Digest::update(sha256, &buf[..n]);
        }
        Ok(n)
    }
}

struct ChunkReader<'a, I> {
    store: &'a Store,
    chunks: I,
    current: io::Cursor<Vec<u8>>,
    packs: &'a mut PackFiles,
}

impl<'a, I: Iterator<Item = &'a ChunkId>> Read for ChunkReader<'a, I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(&id) = self.chunks.next() else {
                return Ok(0);
            };
            let data = self
                .store
                .read_chunk(id, self.packs)
                .map_err(io::Error::other)?;
            self.current = io::Cursor::new(data);
        }
    }
}

#[cfg(test)]
mod crafted {
    //! Snapshots no backup would write: entries named to climb out of the
    //! restore target. Restores refuse them, name them, and write nothing
    //! outside the target.

    use super::*;
    use crate::config::StoreConfig;

    fn crafted_store(root: &Path) -> (Store, SnapshotEntry) {
        let mut config = StoreConfig::new(String::new());
        config.encryption = crate::config::Encryption::None;
        let mut store = Store::init(root, config, None).expect("init");
        let snapshot = store
            .write_crafted_snapshot("web1", "site", &["../escaped", "..", "a/b", "fine"])
            .expect("a crafted snapshot");
        (store, snapshot)
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_lands_outside() {
        let work = tempfile::tempdir().expect("tempdir");
        let (store, snapshot) = crafted_store(&work.path().join("store"));
        let target = work.path().join("target");
        let outcome = store
            .restore_to_dir(&snapshot, "/", &target, 1, &Progress::default())
            .expect("restore");
        assert_eq!(outcome.failed.len(), 3, "{:?}", outcome.failed);
        assert!(
            outcome
                .failed
                .iter()
                .all(|(_, why)| why.contains("would land outside the target directory")),
            "{:?}",
            outcome.failed
        );
        assert!(target.join("site/fine").is_file());
        assert!(!work.path().join("escaped").exists(), "nothing climbed out");
        assert!(!target.join("escaped").exists());
        assert!(!target.join("site/a").exists());

        let mut tar = Vec::new();
        let outcome = store
            .restore_to_tar_hashed(&snapshot, "/", &mut tar)
            .expect("tar");
        assert_eq!(outcome.failed.len(), 3);
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["site", "site/fine"]);
        assert_eq!(
            outcome.digests.len(),
            1,
            "only the file that is written is hashed"
        );
    }
}
