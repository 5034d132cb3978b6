//! The tar stream a restore onto a host is made of: entries in the
//! order the snapshot holds them, each regular file's content read chunk by
//! chunk (checked as it comes) and hashed as it passes, when asked.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Dropped, RestoreOptions, RestoreOutcome, admitted_mode};
use crate::ChunkId;
use crate::error::{Result, StoreError};
use crate::repo::{PackFiles, Store};
use crate::tree::{Node, NodeKind};

pub(super) struct TarWriter<'a, W: Write> {
    pub(super) store: &'a Store,
    pub(super) builder: tar::Builder<W>,
    pub(super) packs: PackFiles,
    pub(super) first_names: HashMap<(u64, u64), PathBuf>,
    pub(super) outcome: &'a mut RestoreOutcome,
    /// Only these files and the directories holding them, when set.
    pub(super) only: Option<&'a BTreeSet<Vec<u8>>>,
    pub(super) options: RestoreOptions,
}

impl<W: Write> TarWriter<'_, W> {
    /// Whether the selection (if any) holds `node` at `path`: a file it
    /// names, or a directory above one.
    fn selected(&self, node: &Node, path: &Path) -> bool {
        let Some(only) = self.only else {
            return true;
        };
        let raw = path.as_os_str().as_bytes();
        if node.kind != NodeKind::Dir {
            return node.kind == NodeKind::File && only.contains(raw);
        }
        let mut prefix = raw.to_vec();
        prefix.push(b'/');
        only.range(prefix.clone()..)
            .next()
            .is_some_and(|first| first.starts_with(&prefix))
    }

    pub(super) fn dir_entries(&mut self, dir: &Node, at: &Path) -> Result<()> {
        let Some(subtree) = dir.subtree else {
            return Ok(());
        };
        let tree = self.store.load_tree(subtree, &mut self.packs)?;
        for node in &tree.nodes {
            self.entry(node, at)?;
        }
        Ok(())
    }

    pub(super) fn entry(&mut self, node: &Node, parent: &Path) -> Result<()> {
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
        if !self.selected(node, &path) {
            return Ok(());
        }
        // A second name of a file is what its first was: counted once.
        let second_name = node.kind == NodeKind::File
            && node.links > 1
            && self.first_names.contains_key(&(node.device, node.inode));
        let mode = if second_name {
            admitted_mode(node, self.options, &mut Dropped::default())
        } else {
            admitted_mode(node, self.options, &mut self.outcome.dropped)
        };
        let Some(mode) = mode else {
            return Ok(());
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
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
                    sha256: sha2::Sha256::default(),
                };
                self.builder
                    .append_data(&mut header, &path, &mut reader)
                    .map_err(io_err)?;
                let digest: String = sha2::Digest::finalize(reader.sha256)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                self.outcome
                    .digests
                    .push((path.as_os_str().as_bytes().to_vec(), digest));
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

/// A reader that hashes what passes through.
struct Hashing<R> {
    inner: R,
    sha256: sha2::Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.sha256, &buf[..n]);
        Ok(n)
    }
}

/// A file's content as one reader over its chunks, checked as they come.
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
