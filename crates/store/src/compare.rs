//! Looking across snapshots: every version of matching files (`find`), and
//! what changed between two snapshots (`diff`). Both lean on trees being
//! content-addressed: a subtree with the same id is the same, so a diff
//! skips it whole and a search looks into it once.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::ChunkId;
use crate::error::Result;
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind};

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One entry that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub change: Change,
    pub path: String,
    pub kind: NodeKind,
    /// Size in the first snapshot (absent when added).
    pub old_size: Option<u64>,
    /// Size in the second snapshot (absent when removed).
    pub new_size: Option<u64>,
}

/// One version of a file: the same content, size and mtime at one path, in
/// the snapshots listed (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub path: String,
    pub kind: NodeKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub snapshots: Vec<String>,
}

impl Store {
    /// What differs under `path` from snapshot `a` to snapshot `b`, in path
    /// order. Directories that are the same tree are not looked into.
    pub fn diff(
        &self,
        a: &SnapshotEntry,
        b: &SnapshotEntry,
        path: &str,
    ) -> Result<Vec<Difference>> {
        let (old, new) = (self.node_at(a, path)?, self.node_at(b, path)?);
        let mut out = Vec::new();
        let mut packs = PackFiles::default();
        let base = path.trim_end_matches('/');
        self.diff_dirs(&old, &new, base, &mut packs, &mut out)?;
        Ok(out)
    }

    fn diff_dirs(
        &self,
        old: &Node,
        new: &Node,
        at: &str,
        packs: &mut PackFiles,
        out: &mut Vec<Difference>,
    ) -> Result<()> {
        if old.subtree == new.subtree {
            return Ok(());
        }
        let old = self.children(old, packs)?;
        let new = self.children(new, packs)?;
        let mut names: Vec<&Vec<u8>> = old.keys().chain(new.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let path = format!("{at}/{}", String::from_utf8_lossy(name));
            match (old.get(name), new.get(name)) {
                (Some(o), None) => self.gone_or_came(o, &path, Change::Removed, packs, out)?,
                (None, Some(n)) => self.gone_or_came(n, &path, Change::Added, packs, out)?,
                (Some(o), Some(n)) if o.kind == NodeKind::Dir && n.kind == NodeKind::Dir => {
                    if o.mode != n.mode || o.uid != n.uid || o.gid != n.gid {
                        out.push(changed(&path, o, n));
                    }
                    self.diff_dirs(o, n, &path, packs, out)?;
                }
                (Some(o), Some(n)) if o.kind != n.kind => {
                    self.gone_or_came(o, &path, Change::Removed, packs, out)?;
                    self.gone_or_came(n, &path, Change::Added, packs, out)?;
                }
                (Some(o), Some(n)) if differs(o, n) => out.push(changed(&path, o, n)),
                _ => {}
            }
        }
        Ok(())
    }

    /// An entry (and, for a directory, all under it) added or removed.
    fn gone_or_came(
        &self,
        node: &Node,
        path: &str,
        change: Change,
        packs: &mut PackFiles,
        out: &mut Vec<Difference>,
    ) -> Result<()> {
        let size = Some(node.size);
        out.push(Difference {
            change,
            path: path.to_string(),
            kind: node.kind,
            old_size: size.filter(|_| change == Change::Removed),
            new_size: size.filter(|_| change == Change::Added),
        });
        if node.kind == NodeKind::Dir {
            let children = self.children(node, packs)?;
            for (name, child) in &children {
                let below = format!("{path}/{}", String::from_utf8_lossy(name));
                self.gone_or_came(child, &below, change, packs, out)?;
            }
        }
        Ok(())
    }

    fn children(&self, dir: &Node, packs: &mut PackFiles) -> Result<BTreeMap<Vec<u8>, Node>> {
        let Some(subtree) = dir.subtree else {
            return Ok(BTreeMap::new());
        };
        Ok(self
            .load_tree(subtree, packs)?
            .nodes
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect())
    }

    /// Every version of the entries `wanted` accepts (given the full path
    /// and the name) across `snapshots`, by path, then oldest first. When
    /// `wanted` looks at names only (`by_name`), a subtree shared by several
    /// snapshots is searched once.
    pub fn find(
        &self,
        snapshots: &[SnapshotEntry],
        wanted: &dyn Fn(&str, &[u8]) -> bool,
        by_name: bool,
    ) -> Result<Vec<Version>> {
        let mut search = Search {
            store: self,
            wanted,
            by_name,
            packs: PackFiles::default(),
            seen: HashMap::new(),
        };
        let mut versions: BTreeMap<(String, Vec<u8>), Version> = BTreeMap::new();
        let mut first_seen: HashMap<(String, Vec<u8>), usize> = HashMap::new();
        for (position, snapshot) in snapshots.iter().enumerate() {
            for (path, node) in search.matches(snapshot.snapshot.tree, "")? {
                let key = (path.clone(), identity(&node));
                first_seen.entry(key.clone()).or_insert(position);
                versions
                    .entry(key)
                    .or_insert_with(|| Version {
                        path,
                        kind: node.kind,
                        size: node.size,
                        mtime_ns: node.mtime_ns,
                        snapshots: Vec::new(),
                    })
                    .snapshots
                    .push(snapshot.id.clone());
            }
        }
        let mut keyed: Vec<((String, Vec<u8>), Version)> = versions.into_iter().collect();
        keyed.sort_by_key(|(key, _)| (key.0.clone(), first_seen.get(key).copied()));
        Ok(keyed.into_iter().map(|(_, v)| v).collect())
    }
}

/// A search through trees; by name, it remembers what each subtree held.
struct Search<'a> {
    store: &'a Store,
    wanted: &'a dyn Fn(&str, &[u8]) -> bool,
    by_name: bool,
    packs: PackFiles,
    /// Matches under a subtree, by path relative to it.
    seen: HashMap<ChunkId, Vec<(String, Node)>>,
}

impl Search<'_> {
    fn matches(&mut self, tree: ChunkId, at: &str) -> Result<Vec<(String, Node)>> {
        if self.by_name
            && let Some(found) = self.seen.get(&tree)
        {
            return Ok(found
                .iter()
                .map(|(rel, n)| (format!("{at}{rel}"), n.clone()))
                .collect());
        }
        let mut found = Vec::new();
        for node in self.store.load_tree(tree, &mut self.packs)?.nodes {
            let path = format!("{at}/{}", String::from_utf8_lossy(&node.name));
            let subtree = node.subtree;
            if (self.wanted)(&path, &node.name) {
                found.push((path.clone(), node));
            }
            if let Some(subtree) = subtree {
                found.extend(self.matches(subtree, &path)?);
            }
        }
        if self.by_name {
            let relative = found
                .iter()
                .map(|(p, n)| (p[at.len()..].to_string(), n.clone()))
                .collect();
            self.seen.insert(tree, relative);
        }
        Ok(found)
    }
}

fn differs(old: &Node, new: &Node) -> bool {
    old.content != new.content
        || old.size != new.size
        || old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.target != new.target
        || old.mtime_ns != new.mtime_ns
}

fn changed(path: &str, old: &Node, new: &Node) -> Difference {
    Difference {
        change: Change::Changed,
        path: path.to_string(),
        kind: new.kind,
        old_size: Some(old.size),
        new_size: Some(new.size),
    }
}

/// What makes two entries at one path the same version.
fn identity(node: &Node) -> Vec<u8> {
    let mut key = Vec::with_capacity(node.content.len() * 32 + 16);
    for id in &node.content {
        key.extend_from_slice(id.as_bytes());
    }
    key.extend_from_slice(&node.size.to_le_bytes());
    key.extend_from_slice(&node.mtime_ns.to_le_bytes());
    if let Some(target) = &node.target {
        key.extend_from_slice(target);
    }
    key
}
