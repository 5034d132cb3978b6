//! The nodes of a backup before they are trees: the arena and how it is
//! written bottom-up, the rule for what must be read again, and the node
//! of an `lstat` entry; local walks and remote listings share them.

use std::collections::{HashMap, HashSet};

use super::Skipped;
use crate::ChunkId;
use crate::pack::BlobKind;
use crate::repo::{PackFiles, Store};
use crate::snapshot::Summary;
use crate::tree::{Node, NodeKind, Tree};
use crate::writer::Sink;

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

    pub(super) fn write_tree(&mut self, at: usize, sink: &Sink<'_>) -> ChunkId {
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
    pub(super) fn summary(&self) -> Summary {
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
