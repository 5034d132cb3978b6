//! What a remote backup does with what the host sends: the store's side of
//! an agentless pull, which the engine's pull protocol drives.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::Ordering;

use crate::backup::{Arena, Changes, Progress, Skipped, chunk_stream};
use crate::chunker::Chunker;
use crate::error::{Result, StoreError};
use crate::tree::{Node, NodeKind};
use crate::writer::Sink;

#[derive(Default)]
pub(super) struct Counts {
    pub(super) files: u64,
    pub(super) bytes: u64,
    pub(super) fetch: Vec<Vec<u8>>,
    pub(super) fetch_at: Vec<usize>,
    pub(super) fetch_bytes: u64,
}

/// The comparison of a listing with the parent snapshot, directory by
/// directory in name order, as a local walk goes.
pub(super) struct Walk<'s> {
    pub(super) changes: Changes<'s>,
    pub(super) plan: Counts,
}

impl Walk<'_> {
    pub(super) fn visit(&mut self, arena: &mut Arena, at: usize, path: &mut Vec<u8>) -> Result<()> {
        let mut children = std::mem::take(&mut arena.children[at]);
        children.sort_by(|&a, &b| arena.nodes[a].name.cmp(&arena.nodes[b].name));
        if let Some(pair) = children
            .windows(2)
            .find(|w| arena.nodes[w[0]].name == arena.nodes[w[1]].name)
        {
            path.push(b'/');
            path.extend_from_slice(&arena.nodes[pair[0]].name);
            return Err(StoreError::Listing(format!(
                "`{}` is listed twice",
                String::from_utf8_lossy(path)
            )));
        }
        for &child in &children {
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(&arena.nodes[child].name);
            let fetch = self.changes.compare(arena, at, child);
            let node = &arena.nodes[child];
            if node.kind == NodeKind::File {
                self.plan.files += 1;
                self.plan.bytes += node.size;
            }
            if fetch {
                self.plan.fetch_bytes += node.size;
                self.plan.fetch.push(path.clone());
                self.plan.fetch_at.push(child);
            }
            if node.kind == NodeKind::Dir {
                self.visit(arena, child, path)?;
                self.changes.leave(child);
            }
            path.truncate(len);
        }
        arena.children[at] = children;
        Ok(())
    }
}

/// The fetch list of a plan: paths, and where each goes in the arena.
pub(super) struct Fetched<'p> {
    pub(super) paths: &'p [Vec<u8>],
    pub(super) at: &'p [usize],
}

impl Fetched<'_> {
    /// Reads the tar into the fetched nodes; returns the ones it did not
    /// deliver, each reported in `skipped`.
    pub(super) fn receive(
        &self,
        tar: impl Read,
        arena: &mut Arena,
        sink: &Sink<'_>,
        progress: &Progress,
        skipped: &mut Vec<Skipped>,
    ) -> Result<HashSet<usize>> {
        let slots: HashMap<&[u8], usize> = self
            .paths
            .iter()
            .enumerate()
            .map(|(slot, path)| (member_key(path), slot))
            .collect();
        let mut delivered = vec![false; self.paths.len()];
        let mut gone = HashSet::new();
        let mut archive = tar::Archive::new(Watched {
            inner: tar,
            bytes: 0,
            ended: false,
        });
        let mut chunker = sink.chunker();
        for entry in archive.entries().map_err(tar_error)? {
            let mut entry = entry.map_err(tar_error)?;
            let name = entry.path_bytes().into_owned();
            let lossy = String::from_utf8_lossy(&name);
            let Some(&slot) = slots.get(member_key(&name)) else {
                return Err(StoreError::Tar(format!(
                    "member `{lossy}` is not in the fetch list: this is not the tar of this plan's fetch list; nothing was written"
                )));
            };
            if std::mem::replace(&mut delivered[slot], true) {
                return Err(StoreError::Tar(format!(
                    "member `{lossy}` came twice: this is not the tar of this plan's fetch list; nothing was written"
                )));
            }
            let at = self.at[slot];
            match take_member(
                &mut entry,
                &mut arena.nodes[at],
                &mut chunker,
                sink,
                progress,
            )? {
                Ok(bytes) => arena.bytes_read += bytes,
                Err(error) => {
                    skipped.push(Skipped {
                        path: String::from_utf8_lossy(&self.paths[slot]).into_owned(),
                        error,
                    });
                    gone.insert(at);
                }
            }
            if sink.failed() {
                // The packer's error is what the backup reports.
                return Ok(gone);
            }
        }
        let mut rest = archive.into_inner();
        if rest.ended && !(rest.bytes == 0 && self.paths.is_empty()) {
            return Err(StoreError::Tar(
                "the stream stopped before tar's end-of-archive blocks: the tar command was cut off or failed; nothing was written"
                    .into(),
            ));
        }
        // To the end, so a reader that reports its command's failure there
        // is heard before the snapshot is written.
        io::copy(&mut rest, &mut io::sink()).map_err(tar_error)?;
        for (slot, _) in delivered.iter().enumerate().filter(|(_, d)| !**d) {
            skipped.push(Skipped {
                path: String::from_utf8_lossy(&self.paths[slot]).into_owned(),
                error: "tar did not deliver it: it was removed after the listing, or could not be read (tar's error output says which)".into(),
            });
            gone.insert(self.at[slot]);
        }
        Ok(gone)
    }
}

/// Takes one member into its node. The outer error is the stream's; the
/// inner one says why the member does not fit its node (it is then skipped).
fn take_member(
    entry: &mut tar::Entry<'_, impl Read>,
    node: &mut Node,
    chunker: &mut Chunker,
    sink: &Sink<'_>,
    progress: &Progress,
) -> Result<Result<u64, String>> {
    let header = entry.header();
    let found = header.entry_type();
    let mtime = header.mtime().ok().and_then(|m| i64::try_from(m).ok());
    let device = (
        header.device_major().ok().flatten(),
        header.device_minor().ok().flatten(),
    );
    let taken = match (node.kind, found) {
        (NodeKind::File, tar::EntryType::Regular | tar::EntryType::Continuous) => {
            let (content, size) =
                chunk_stream(&mut *entry, chunker, sink, progress, None).map_err(tar_error)?;
            // tar's mtime has whole seconds; one before 1970 is not compared.
            let moved = node.mtime_ns >= 0
                && mtime.is_some_and(|m| m != node.mtime_ns.div_euclid(1_000_000_000));
            if size != node.size || moved {
                // Not what the listing saw: record what tar saw, and a ctime
                // no file has, so the next backup fetches it again.
                if let Some(seconds) = mtime.filter(|_| moved) {
                    node.mtime_ns = seconds.saturating_mul(1_000_000_000);
                }
                node.ctime_ns = 0;
            }
            node.size = size;
            node.content = content;
            Ok(size)
        }
        (NodeKind::Chardev, tar::EntryType::Char) | (NodeKind::Blockdev, tar::EntryType::Block) => {
            match device {
                (Some(major), Some(minor)) => {
                    node.rdev = Some(nix::sys::stat::makedev(major.into(), minor.into()));
                    Ok(0)
                }
                _ => Err("tar gave no device number".to_string()),
            }
        }
        (kind, found) => Err(format!(
            "the listing saw a {} but tar found {}: it changed during the backup",
            kind_name(kind),
            match found {
                tar::EntryType::Directory => "a directory",
                tar::EntryType::Symlink => "a symlink",
                tar::EntryType::Link => "a hard link (run the tar with --hard-dereference)",
                tar::EntryType::Regular | tar::EntryType::Continuous => "a regular file",
                tar::EntryType::Fifo => "a fifo",
                tar::EntryType::Char | tar::EntryType::Block => "a device node",
                _ => "an entry of another type",
            }
        )),
    };
    progress.files_done.fetch_add(1, Ordering::Relaxed);
    Ok(taken)
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "regular file",
        NodeKind::Dir => "directory",
        NodeKind::Symlink => "symlink",
        NodeKind::Chardev => "character device",
        NodeKind::Blockdev => "block device",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
    }
}

fn tar_error(err: io::Error) -> StoreError {
    StoreError::Tar(err.to_string())
}

/// A tar member's name as a fetch-list path, without leading slashes (GNU
/// tar keeps them with `--absolute-names`, strips them without) or trailing
/// ones (it adds one to a directory's name).
fn member_key(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let end = path
        .iter()
        .rposition(|&b| b != b'/')
        .map_or(start, |at| at + 1);
    &path[start..end.max(start)]
}

/// A reader that remembers whether its stream ended and how much it gave.
struct Watched<R> {
    inner: R,
    bytes: u64,
    ended: bool,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended = true;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}
