//! The restore's file-system work beneath its target, all through
//! descriptors of directories it made or checked: nothing here follows a
//! link it did not create.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, fstatat,
    futimens, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use super::{Dropped, RestoreOptions};
use crate::error::{IoContext, Result};
use crate::tree::{Node, NodeKind};

/// A directory's device and inode: what it is, whatever its name.
pub(super) fn identity_of(stat: FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

/// Where an entry goes: a name in a planned directory; `path` is for
/// messages only, never opened.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub(super) dir: usize,
    pub(super) name: Vec<u8>,
    pub(super) path: PathBuf,
}

/// A directory the restore made or checked.
pub(super) struct PlannedDir {
    /// The directory it is in (the target, number 0, is its own parent).
    pub(super) parent: usize,
    pub(super) name: Vec<u8>,
    /// Device and inode when it was made or checked.
    pub(super) identity: (u64, u64),
    pub(super) path: PathBuf,
    /// Its node and mode, set once everything under it is planned; `None`
    /// for the target, whose metadata is not the snapshot's.
    pub(super) meta: Option<(Node, u32)>,
}

pub(super) struct PlannedFile {
    pub(super) place: Place,
    pub(super) node: Node,
    pub(super) mode: u32,
    /// Device and inode of a file written in several units, once made.
    pub(super) identity: Option<(u64, u64)>,
}

impl PlannedFile {
    pub(super) fn new(place: Place, node: Node, mode: u32) -> Self {
        Self {
            place,
            node,
            mode,
            identity: None,
        }
    }
}

pub(super) struct Plan {
    /// The target directory, open for the whole restore.
    pub(super) target: OwnedFd,
    /// Every directory in the order planned, parents before children; the
    /// target is number 0.
    pub(super) dirs: Vec<PlannedDir>,
    pub(super) files: Vec<PlannedFile>,
    pub(super) others: Vec<(Place, Node, u32)>,
    pub(super) hard_links: Vec<(Place, Place)>,
    pub(super) first_names: HashMap<(u64, u64), Place>,
    pub(super) failed: Vec<(String, String)>,
    pub(super) failed_files: u64,
    pub(super) bytes: u64,
    pub(super) options: RestoreOptions,
    /// Whether owners are restored: with keep_privileges, as root.
    pub(super) chown: bool,
    /// The user and group the restore runs as.
    pub(super) me: (u32, u32),
    pub(super) dropped: Dropped,
}

impl Plan {
    pub(super) fn fail(&mut self, path: &Path, err: impl ToString) {
        self.failed
            .push((path.display().to_string(), err.to_string()));
    }
}

pub(super) struct Unit {
    pub(super) file: usize,
    pub(super) first: usize,
    pub(super) whole: bool,
}

/// Opens planned directories again from the target, one component at a
/// time without following links, each checked to be the directory that
/// was planned; keeps the last chain open, as consecutive entries mostly
/// share their directory.
pub(super) struct Walker<'a> {
    pub(super) target: &'a OwnedFd,
    pub(super) dirs: &'a [PlannedDir],
    pub(super) chain: Vec<(usize, OwnedFd)>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(target: &'a OwnedFd, dirs: &'a [PlannedDir]) -> Self {
        Self {
            target,
            dirs,
            chain: Vec::new(),
        }
    }

    /// Directory number `index`, open.
    pub(super) fn open(&mut self, index: usize) -> Result<BorrowedFd<'_>> {
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

pub(super) fn not_the_planned_directory() -> io::Error {
    io::Error::other(
        "not the directory the restore made or checked (replaced by a link or \
         something else during the restore); nothing is written through it",
    )
}

/// `dir` under `parent` as planned: never through a link, and the same
/// directory (device and inode) as when it was made or checked.
pub(super) fn reopen_dir(parent: BorrowedFd, dir: &PlannedDir) -> io::Result<OwnedFd> {
    let fd = open_dir_at(parent, &dir.name).map_err(|err| match err {
        Errno::ELOOP | Errno::ENOTDIR => not_the_planned_directory(),
        other => other.into(),
    })?;
    if identity_of(fstat(&fd)?) != dir.identity {
        return Err(not_the_planned_directory());
    }
    Ok(fd)
}

pub(super) fn open_dir_at(parent: BorrowedFd, name: &[u8]) -> nix::Result<OwnedFd> {
    openat(
        parent,
        OsStr::from_bytes(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

pub(super) fn is_kind(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == kind
}

/// Makes `name` under `parent` a directory and opens it: an existing
/// directory is used, a symbolic link is refused, anything else is
/// replaced. A new directory is private (0700) until its own metadata is
/// set at the end of the restore.
pub(super) fn enter_dir(parent: BorrowedFd, name: &[u8]) -> io::Result<OwnedFd> {
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
pub(super) fn finish_entries(plan: &mut Plan) {
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
pub(super) fn clear(dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
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
pub(super) fn create_file(dir: BorrowedFd, name: &[u8], size: u64) -> io::Result<File> {
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
pub(super) fn open_made(dir: BorrowedFd, place: &Place, identity: (u64, u64)) -> Result<File> {
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

pub(super) fn mtime_of(node: &Node) -> TimeSpec {
    TimeSpec::new(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000),
    )
}

/// Owner (when `chown`), mode and times of an open file or directory;
/// owner first, as chown clears setuid bits.
pub(super) fn set_metadata(fd: impl AsFd, node: &Node, mode: u32, chown: bool) -> io::Result<()> {
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
pub(super) fn make_special(
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
