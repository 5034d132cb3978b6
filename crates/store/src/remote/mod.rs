//! Agentless pull backups, the store's side: a host that offers nothing
//! but a shell, GNU find and GNU tar is backed up incrementally from two
//! streams. The engine's pull protocol runs the commands on the host and
//! feeds their output here; the store knows neither the commands nor how
//! they reach it.
//!
//! 1. A [`Listing`] is built one [`Entry`] at a time, as the host's listing
//!    arrives; [`Store::plan_remote_backup`] compares it with the host's
//!    previous snapshot of the same paths by the rule local backups use
//!    (same size, mtime, ctime, inode and device: unchanged). The
//!    [`RemotePlan`] says what is there and what must be fetched: new and
//!    changed regular files, and new or changed device nodes (a listing
//!    cannot give a device's number; a tar header carries it).
//! 2. [`Store::backup_remote`] reads a tar of [`RemotePlan::fetch`] (GNU
//!    format, absolute names, hard links dereferenced) and writes the
//!    snapshot: entries from the listing, contents from the tar for
//!    fetched files and from the parent snapshot for the others, then each
//!    named stream ([`RemoteOptions::streams`]) as a file at its root.
//!
//! Listed on `localhost`, the snapshot is the tree a local backup
//! ([`Store::backup_paths`]) of the same paths makes (`/etc/nginx` is `etc`
//! → `nginx`, with the metadata of `/etc` itself), so restore, `ls`, diff
//! and the parent lookup treat both alike, and either can be the other's
//! parent.
//!
//! # Files that change while the backup runs
//!
//! A fetched file tar does not deliver (removed after the listing, or
//! unreadable) is left out of the snapshot and reported as [`Skipped`]; so is
//! one tar finds to be something else by then (a directory, a symlink). A
//! file tar delivers with another size or mtime than the listing gave is
//! stored as tar delivered it, with tar's mtime and a ctime of 0, which no
//! file has, so the next backup fetches it again. The size in a node is
//! always the length of its content.
//!
//! # Streams that fail
//!
//! A reader that returns an error at its end when its command failed makes
//! [`Store::backup_remote`] write nothing: it reads each stream to its end
//! before it writes the snapshot, and refuses a tar that stops before its
//! end-of-archive blocks.

mod ingest;
mod listing;

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::backup::{
    Arena, BackupOptions, BackupOutcome, Changes, Progress, Skipped, chunk_stream, synthetic_file,
};
use crate::error::{IoContext, Result, StoreError};
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use ingest::{Counts, Fetched, Walk};
pub use listing::{BadEntry, Entry, Listing};

/// What a remote backup covers and how its snapshot is recorded.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// The paths listed, absolute; taken as [`remote_paths`] gives them.
    pub paths: Vec<String>,
    /// Named command-output streams the snapshot also holds, each a file
    /// of that name at its root (`pg_dumpall.sql`). The parent is the
    /// latest snapshot of the same paths and streams.
    pub streams: Vec<String>,
    /// The host, tags, parent and threads, as for any backup.
    pub backup: BackupOptions,
}

/// What a remote backup will do: what the listing holds, what the parent
/// snapshot already has, and what tar must fetch. Shown as it is by a check
/// run; [`Store::backup_remote`] carries it out.
#[derive(Debug)]
pub struct RemotePlan {
    /// The paths as the snapshot records them: absolute, sorted, each once.
    pub paths: Vec<String>,
    /// The snapshot compared with, whose contents unchanged files reuse.
    pub parent: Option<SnapshotEntry>,
    /// Regular files listed (every name of a hard-linked one), and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files whose content the parent snapshot has.
    pub unchanged: u64,
    /// The paths tar must deliver, as raw bytes: new and changed files, and
    /// new or changed device nodes.
    pub fetch: Vec<Vec<u8>>,
    pub fetch_bytes: u64,
    /// Entries the listing could not cover (unreadable directories).
    pub skipped: Vec<Skipped>,
    /// Named command-output streams the snapshot also holds, each a file
    /// of that name at its root (`pg_dumpall.sql`).
    pub streams: Vec<String>,
    /// What the snapshot records: host, tags, threads.
    options: BackupOptions,
    /// What the snapshot records as its paths: the paths, then
    /// `stream:NAME` for each stream.
    labels: Vec<String>,
    started: Instant,
    arena: Arena,
    /// The arena index of each path in `fetch`.
    fetch_at: Vec<usize>,
    link_copies: Vec<(usize, usize)>,
}

impl Store {
    /// Compares a host's listing of `options.paths` with its latest
    /// snapshot of the same paths and streams, or `options.backup.parent`,
    /// and says what to fetch. This is where a remote backup starts: the
    /// index is brought up to date here, so the caller holds the store's
    /// shared lock from before this call until [`Store::backup_remote`]
    /// returns, as for any backup. A path that is not in the listing is an
    /// error, as a missing local path is.
    pub fn plan_remote_backup(
        &mut self,
        listing: Listing,
        options: &RemoteOptions,
    ) -> Result<RemotePlan> {
        let started = Instant::now();
        self.prepare_backup()?;
        let paths = remote_paths(&options.paths)?;
        check_stream_names(&options.streams, &paths)?;
        let mut labels = paths.clone();
        labels.extend(options.streams.iter().map(|name| format!("stream:{name}")));
        let Listing {
            mut arena, skipped, ..
        } = listing;
        if let Some(missing) = paths.iter().find(|p| !is_listed(&arena, p)) {
            return Err(StoreError::Listing(format!(
                "`{missing}` is not in it: it does not exist on the host, find could not read it, or an exclude pattern matches it"
            )));
        }
        let parent = self.parent_for(&options.backup, &labels)?;
        let parent_tree = match &parent {
            Some(entry) => Some(self.load_tree(entry.snapshot.tree, &mut PackFiles::default())?),
            None => None,
        };
        let mut walk = Walk {
            changes: Changes::new(self, parent_tree),
            plan: Counts::default(),
        };
        walk.visit(&mut arena, 0, &mut Vec::new())?;
        let Walk { changes, plan } = walk;
        Ok(RemotePlan {
            paths,
            parent,
            files: plan.files,
            bytes: plan.bytes,
            unchanged: arena.unchanged,
            fetch: plan.fetch,
            fetch_bytes: plan.fetch_bytes,
            skipped,
            streams: options.streams.clone(),
            options: options.backup.clone(),
            labels,
            started,
            arena,
            fetch_at: plan.fetch_at,
            link_copies: changes.link_copies,
        })
    }

    /// Carries out a plan with a tar of its fetch list, then each named
    /// stream of the plan, in its order, read to its end into a file of its
    /// name at the snapshot's root; writes the snapshot with the plan's
    /// options, paths and parent. Files tar did not deliver are left out and
    /// reported as skipped; a member that is not in the fetch list, a tar
    /// cut off before its end, or a stream whose reader fails is refused and
    /// nothing is written. With nothing to fetch, pass an empty reader.
    pub fn backup_remote(
        &mut self,
        plan: RemotePlan,
        tar: impl Read,
        streams: Vec<StreamSource<'_>>,
        progress: &Progress,
    ) -> Result<BackupOutcome> {
        let given: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        if given != plan.streams.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(StoreError::Setting(format!(
                "the plan names the streams {:?}, the backup was given {given:?}: give the plan's, in its order",
                plan.streams
            )));
        }
        progress
            .files_total
            .store(plan.fetch.len() as u64, Ordering::Relaxed);
        progress
            .bytes_total
            .store(plan.fetch_bytes, Ordering::Relaxed);
        let RemotePlan {
            labels,
            parent,
            fetch,
            mut skipped,
            started,
            mut arena,
            fetch_at,
            link_copies,
            options,
            ..
        } = plan;
        self.write_backup(started, labels, parent, &options, |_, sink| {
            let fetched = Fetched {
                paths: &fetch,
                at: &fetch_at,
            };
            let gone = fetched.receive(tar, &mut arena, sink, progress, &mut skipped)?;
            let orphans = arena.settle(link_copies, gone);
            skipped.extend(orphans);
            for stream in streams {
                if sink.failed() {
                    // The write already failed: the snapshot will not be
                    // written, and opening a stream now would leave the
                    // tar's channel unread beside it.
                    break;
                }
                let name = stream.name;
                let reader = (stream.open)().at("starting stream", &name)?;
                let (content, size) =
                    chunk_stream(reader, &mut sink.chunker(), sink, progress, None)
                        .at("reading stream", &name)?;
                let mut node = synthetic_file(name.into_bytes(), 0o600);
                node.size = size;
                node.content = content;
                arena.add(0, node);
                arena.bytes_read += size;
            }
            Ok((arena, skipped))
        })
    }
}

/// A named stream for [`Store::backup_remote`]: opened when
/// its turn comes (after the tar), so only one stream of a host's
/// connection is read at a time.
pub struct StreamSource<'a> {
    pub name: String,
    pub open: Box<dyn FnOnce() -> io::Result<Box<dyn Read + 'a>> + Send + 'a>,
}

impl std::fmt::Debug for StreamSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Stream names become files at the snapshot's root: one name each, safe,
/// distinct, and none the first component of a path.
fn check_stream_names(streams: &[String], paths: &[String]) -> Result<()> {
    let tops: HashSet<&str> = paths
        .iter()
        .filter_map(|p| p.trim_start_matches('/').split('/').next())
        .collect();
    let mut seen = HashSet::new();
    for name in streams {
        let why = if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            "give a file name, without `/`"
        } else if tops.contains(name.as_str()) {
            "it is the name of a backed-up path's top directory"
        } else if !seen.insert(name.as_str()) {
            "two streams have it"
        } else {
            continue;
        };
        return Err(StoreError::Setting(format!("stream name `{name}`: {why}")));
    }
    Ok(())
}

/// The paths as a snapshot records them: absolute, without `.` or empty
/// components, sorted as local backup paths are, each once. A listing of
/// them lists these.
pub fn remote_paths(paths: &[String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Err(StoreError::Setting(
            "no paths to back up: name at least one".into(),
        ));
    }
    let mut out = Vec::new();
    for path in paths {
        if !path.starts_with('/') || path.contains('\0') {
            return Err(StoreError::Setting(format!(
                "`{path}`: give a remote path as an absolute path (starting with /), without NUL"
            )));
        }
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.contains(&"..") {
            return Err(StoreError::Setting(format!(
                "`{path}`: give the path without `..`"
            )));
        }
        out.push(format!("/{}", parts.join("/")));
    }
    out.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
    out.dedup();
    Ok(out)
}

fn is_listed(arena: &Arena, path: &str) -> bool {
    let mut at = 0;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        match arena.child(at, part.as_bytes()) {
            Some(child) => at = child,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_single_distinct_names_clear_of_the_paths() {
        let paths = ["/etc".to_string(), "/var/lib".to_string()];
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(check_stream_names(&names(&["pg.sql", "ldap.ldif"]), &paths).is_ok());
        for bad in [&["a/b"][..], &[".."], &[""], &["etc"], &["x", "x"]] {
            let err = check_stream_names(&names(bad), &paths).expect_err("refused");
            assert!(err.to_string().contains("stream name"), "{err}");
        }
    }
}
