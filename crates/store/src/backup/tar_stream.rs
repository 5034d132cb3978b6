//! Backing up a tar stream: its members become an arena, file contents
//! chunked as they come.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::Ordering;

use super::{Arena, Progress, chunk_stream, synthetic_dir, synthetic_file};
use crate::error::{Result, StoreError};
use crate::tree::{Node, NodeKind};
use crate::writer::Sink;

/// Reads a tar stream into an arena, chunking file contents as they come.
pub(super) fn tar_arena(reader: impl Read, sink: &Sink<'_>, progress: &Progress) -> Result<Arena> {
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
