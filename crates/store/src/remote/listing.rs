//! A host's listing as the tree it forms, built one entry at a time as the
//! entries arrive: nothing but the tree is held, never the listing's text.

use crate::backup::{Arena, Skipped, Stat, stat_node, synthetic_dir};
use crate::tree::NodeKind;

/// One listed entry: its absolute path and what `lstat` says of it.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Absolute, as raw bytes: `/etc/nginx/nginx.conf`.
    pub path: &'a [u8],
    pub stat: Stat,
    /// The owners' names, where the host has them.
    pub user: Option<String>,
    pub group: Option<String>,
    /// A symlink's target; `None` for any other entry.
    pub target: Option<Vec<u8>>,
    /// False for a directory the lister may not read or search: it is
    /// recorded empty and reported as [`Skipped`].
    pub readable: bool,
}

/// Why an entry does not fit the tree the entries before it built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadEntry(String);

/// A listing being read: its entries as the tree they form, in walk order.
/// [`Store::plan_remote_backup`](crate::Store::plan_remote_backup) compares
/// it with the host's last snapshot.
#[derive(Debug)]
pub struct Listing {
    pub(super) arena: Arena,
    entries: usize,
    /// Directories the lister could not read, recorded empty.
    pub(super) skipped: Vec<Skipped>,
    /// The directory the last entry is in, from the top: names and indices.
    stack: Vec<(Vec<u8>, usize)>,
}

impl Default for Listing {
    fn default() -> Self {
        Self::new()
    }
}

impl Listing {
    pub fn new() -> Self {
        Self {
            arena: Arena::root(synthetic_dir(Vec::new())),
            entries: 0,
            skipped: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// How many entries the listing holds.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Adds the next entry. Entries must come after their directory, as
    /// find lists them; a path that is not absolute or has an empty, `.`
    /// or `..` component is refused.
    pub fn add(&mut self, entry: Entry<'_>) -> Result<(), BadEntry> {
        let Entry {
            path,
            stat,
            user,
            group,
            target,
            readable,
        } = entry;
        let bad = |what: &str| Err(BadEntry(what.to_string()));
        let mut node = stat_node(Vec::new(), stat, user, group);
        node.target = target;
        let Some(relative) = path.strip_prefix(b"/") else {
            return bad("the path is not absolute");
        };
        if relative.is_empty() {
            // The root itself (path `/`): its entries go into the root tree.
            return match node.kind {
                NodeKind::Dir => Ok(()),
                _ => bad("`/` is not a directory"),
            };
        }
        let parts: Vec<&[u8]> = relative.split(|&b| b == b'/').collect();
        if parts.contains(&&b".."[..]) {
            return bad("a `..` component is refused");
        }
        if parts.iter().any(|p| p.is_empty() || *p == b".") {
            return bad("an empty or `.` component is refused");
        }
        let (name, dirs) = parts.split_last().expect("split gives one part at least");
        let arena = &mut self.arena;
        let keep = self
            .stack
            .iter()
            .zip(dirs)
            .take_while(|((name, _), dir)| name == *dir)
            .count();
        self.stack.truncate(keep);
        for dir in &dirs[keep..] {
            let parent = self.stack.last().map_or(0, |s| s.1);
            match arena.child(parent, dir) {
                Some(at) if arena.nodes[at].kind == NodeKind::Dir => {
                    self.stack.push((dir.to_vec(), at));
                }
                _ => {
                    return bad(
                        "its directory is not listed before it (entries follow their directory, as find lists them)",
                    );
                }
            }
        }
        node.name = name.to_vec();
        let is_dir = node.kind == NodeKind::Dir;
        let at = arena.add(self.stack.last().map_or(0, |s| s.1), node);
        if is_dir {
            self.stack.push((name.to_vec(), at));
        }
        if !readable {
            self.skipped.push(Skipped {
                path: String::from_utf8_lossy(path).into_owned(),
                error: "find may not read or search this directory: it is backed up empty".into(),
            });
        }
        self.entries += 1;
        Ok(())
    }
}
