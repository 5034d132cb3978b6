//! Agentless pull backups: a host that offers nothing but a shell, GNU find
//! and GNU tar is backed up incrementally through two command streams.
//!
//! 1. [`listing_command`] lists the paths in one stream, one record per
//!    entry with everything a tree needs: type, mode, owner, size, mtime,
//!    ctime, inode, device, link count and symlink target.
//! 2. [`parse_listing`] reads that stream as it arrives into a [`Listing`],
//!    and [`Store::plan_remote_backup`] compares it with the host's previous
//!    snapshot of the same paths by the rule local backups use (same size,
//!    mtime, ctime, inode and device: unchanged). The [`RemotePlan`] says what
//!    is there and what must be fetched: new and changed regular files, and
//!    new or changed device nodes (find cannot print a device's number; a
//!    tar header carries it).
//! 3. The caller writes [`RemotePlan::fetch_list`] to a file on the host and
//!    runs [`tar_command`] on it; [`Store::backup_remote`] reads the tar and
//!    writes the snapshot: entries from the listing, contents from the tar for
//!    fetched files and from the parent snapshot for the others.
//!
//! Run through a local shell, the same commands back up `localhost`. The
//! snapshot is the tree a local backup ([`Store::backup_paths`]) of the same
//! paths makes (`/etc/nginx` is `etc` → `nginx`, with the metadata of
//! `/etc` itself), so restore, `ls`, diff and the parent lookup treat both
//! alike, and either can be the other's parent.
//!
//! # What the host needs
//!
//! A POSIX `sh`, GNU findutils 4.5 or later (`-printf` with `%T@` and `\0`,
//! `-readable`, `-executable`, `-xdev`) and GNU tar 1.29 or later
//! (`--verbatim-files-from`); Debian 9 and later ship both. BusyBox find and
//! tar lack these options and fail with an error rather than a wrong listing.
//!
//! # What the listing covers
//!
//! Each path with everything below it on the same file system (`-xdev`): a
//! file system mounted below a path is listed as its empty mount point, so
//! `/proc`, network mounts and bind mounts are never walked by accident;
//! name each further file system as a path of its own. Symlinks are not
//! followed, except in the directories leading to a path (`/srv` a symlink
//! to `/data/srv`, path `/srv/www`: `srv` is recorded as the directory it
//! points to). A directory find may not read or search is recorded, empty,
//! and reported as [`Skipped`], as a local backup does.
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
//! # Exit statuses, for the caller
//!
//! find exits 1 when an entry vanished during the walk or could not be
//! read (its error output names them): the listing is still sound. tar,
//! made to ignore files it cannot read, exits 1 when a file changed while
//! it read it (the snapshot holds what it read, and a file that shrank
//! meanwhile is padded with zeros by GNU tar: its stream cannot show it, so
//! report that exit status), and 2 or more on a fatal error. A reader that
//! returns an error at its end when the command failed makes
//! [`Store::backup_remote`] write nothing: it reads the stream to its end
//! before it writes the snapshot, and refuses a stream that stops before
//! tar's end-of-archive blocks.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::backup::{
    Arena, BackupOptions, BackupOutcome, Changes, Progress, Skipped, Stat, chunk_stream, stat_node,
    synthetic_dir, synthetic_file,
};
use crate::chunker::Chunker;
use crate::error::{IoContext, Result, StoreError};
use crate::repo::{PackFiles, Store};
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind};
use crate::writer::Sink;

/// One entry: ten numbers (type, octal mode, uid, gid, size, mtime, ctime,
/// inode, device, links) separated by spaces, then user, group, path and
/// symlink target, each of the five fields ended by a NUL. The user and
/// group fields are left empty: find's `%u` and `%g` look the name up for
/// every entry, reading `/etc/passwd` and `/etc/group` each time, which
/// made the listing of a 50,000-entry tree take 1.10 s instead of 0.29 s.
/// The names come once, from [`OWNERS`] tables ahead of the records.
const RECORD: &str = r"%y %m %U %G %s %T@ %C@ %i %D %n\0\0\0%p\0%l\0";

/// The first field of a listing that starts with owner tables: then the
/// account database's `passwd` lines, an empty field, its `group` lines,
/// an empty field, each line a field.
const OWNERS: &[u8] = b"nightshift-owners";

/// Prints the owner tables: `getent` where there is one (it sees the
/// directory services the host uses, where they enumerate), else the files.
/// An owner in neither is recorded by number, as one without a name is.
fn owners_command() -> String {
    let table = |db: &str| {
        format!(
            "(getent {db} 2>/dev/null || cat /etc/{db} 2>/dev/null) | tr '\\n' '\\000'; printf '\\000'"
        )
    };
    format!(
        "{{ printf '%s\\000' {}; {}; {}; }} && ",
        String::from_utf8_lossy(OWNERS),
        table("passwd"),
        table("group")
    )
}

/// The type find's record gives a directory it may not read or search.
const UNREADABLE_DIR: &str = "d!";

/// The shell command that lists `paths` (absolute) in one stream, leaving
/// out entries that match an `exclude` glob: a pattern with a `/` is
/// matched against the whole path (`/var/cache/*`, `*/node_modules`), one
/// without against the name (`*.tmp`); an excluded directory is not
/// entered. The paths are taken as [`Store::plan_remote_backup`] takes them
/// (sorted, duplicates dropped); one inside another is listed once.
pub fn listing_command(paths: &[String], exclude: &[String]) -> Result<String> {
    let paths = remote_paths(paths)?;
    if let Some(bad) = exclude.iter().find(|p| p.is_empty() || p.contains('\0')) {
        return Err(StoreError::Setting(format!(
            "exclude pattern {bad:?}: give a glob such as `*.tmp`, not empty and without NUL"
        )));
    }
    let starts: Vec<&String> = paths
        .iter()
        .filter(|p| !paths.iter().any(|outer| is_inside(p, outer)))
        .collect();
    let mut ancestors: Vec<&str> = starts
        .iter()
        .flat_map(|p| p.match_indices('/').skip(1).map(|(at, _)| &p[..at]))
        .collect();
    ancestors.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
    ancestors.dedup();
    let quoted =
        |list: &mut dyn Iterator<Item = &str>| list.map(quote).collect::<Vec<_>>().join(" ");
    let mut command = owners_command();
    if !ancestors.is_empty() {
        command += &format!(
            "LC_ALL=C find -H {} -maxdepth 0 -printf {} && ",
            quoted(&mut ancestors.iter().copied()),
            quote(RECORD)
        );
    }
    command += &format!(
        "LC_ALL=C find -P {} -xdev ",
        quoted(&mut starts.iter().map(|p| p.as_str()))
    );
    if !exclude.is_empty() {
        let tests: Vec<String> = exclude
            .iter()
            .map(|p| {
                let test = if p.contains('/') { "-path" } else { "-name" };
                format!("{test} {}", quote(p))
            })
            .collect();
        command += &format!("\\( {} \\) -prune -o ", tests.join(" -o "));
    }
    command += &format!(
        "-type d ! \\( -readable -executable \\) -printf {} -prune -o -printf {}",
        quote(&RECORD.replacen("%y", UNREADABLE_DIR, 1)),
        quote(RECORD)
    );
    Ok(command)
}

/// The shell command that writes to its stdout a tar of the files named,
/// NUL-separated, in `list_file` on the host ([`RemotePlan::fetch_list`]):
/// GNU format (names are bytes), no recursion, each hard-linked name in full,
/// absolute names kept, and files it cannot read skipped with a warning.
pub fn tar_command(list_file: &str) -> String {
    format!(
        "LC_ALL=C tar --create --file=- --format=gnu --no-recursion --hard-dereference \
         --ignore-failed-read --absolute-names --null --verbatim-files-from --no-unquote \
         --files-from={}",
        quote(list_file)
    )
}

/// A parsed listing: its entries as the tree they form, in walk order.
#[derive(Debug)]
pub struct Listing {
    arena: Arena,
    entries: usize,
    /// Directories find could not read, recorded empty.
    skipped: Vec<Skipped>,
}

impl Listing {
    /// How many entries the listing holds.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Reads the output of [`listing_command`] as it arrives. Entries must come
/// after their directory, as find lists them; a record that does not parse,
/// is cut off, or has a path that is not absolute or has an empty, `.` or
/// `..` component is an error naming the record.
pub fn parse_listing(reader: impl Read) -> Result<Listing> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut parser = Parser {
        listing: Listing {
            arena: Arena::root(synthetic_dir(Vec::new())),
            entries: 0,
            skipped: Vec::new(),
        },
        stack: Vec::new(),
        owners: Owners::default(),
    };
    let mut fields: [Vec<u8>; 5] = Default::default();
    let mut first = Vec::new();
    if read_field(&mut reader, &mut first)? && first == OWNERS {
        parser.owners = Owners::read(&mut reader)?;
        first.clear();
    }
    for record in 1.. {
        let mut complete = 0;
        for (n, field) in fields.iter_mut().enumerate() {
            field.clear();
            let ended = if record == 1 && n == 0 && !first.is_empty() {
                field.append(&mut first);
                true
            } else {
                read_field(&mut reader, field)?
            };
            if !ended {
                break;
            }
            complete += 1;
        }
        match complete {
            5 => parser.add(record, &fields)?,
            0 if fields[0].is_empty() => break,
            _ => {
                return Err(StoreError::Listing(format!(
                    "record {record} is cut off after {complete} of its 5 fields (was find interrupted?)"
                )));
            }
        }
    }
    Ok(parser.listing)
}

/// Reads one NUL-ended field into `field` (without the NUL); false when
/// the stream ended first (what was read is left in `field`).
fn read_field(reader: &mut impl BufRead, field: &mut Vec<u8>) -> Result<bool> {
    reader
        .read_until(0, field)
        .at("reading", "the file listing")?;
    Ok(field.pop_if(|b| *b == 0).is_some())
}

/// Owner names by number, from the tables ahead of the records.
#[derive(Debug, Default)]
struct Owners {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Owners {
    /// Reads the `passwd` lines, then the `group` lines, each table ended
    /// by an empty field; `name:password:id:...`, as both databases write.
    fn read(reader: &mut impl BufRead) -> Result<Self> {
        let mut owners = Self::default();
        for table in [&mut owners.users, &mut owners.groups] {
            let mut line = Vec::new();
            loop {
                line.clear();
                if !read_field(reader, &mut line)? {
                    return Err(StoreError::Listing(
                        "the owner tables ahead of the records are cut off".into(),
                    ));
                }
                if line.is_empty() {
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let mut parts = text.split(':');
                let (Some(name), Some(id)) = (parts.next(), parts.nth(1)) else {
                    continue; // a comment or a line of another shape
                };
                if let Ok(id) = id.parse() {
                    // The first line for an id wins, as getpwuid's does.
                    table.entry(id).or_insert_with(|| name.to_string());
                }
            }
        }
        Ok(owners)
    }
}

struct Parser {
    listing: Listing,
    owners: Owners,
    /// The directory the last entry is in, from the top: names and indices.
    stack: Vec<(Vec<u8>, usize)>,
}

impl Parser {
    fn add(&mut self, record: u64, fields: &[Vec<u8>; 5]) -> Result<()> {
        let [header, user, group, path, target] = fields;
        let bad = |what: String| {
            StoreError::Listing(format!(
                "record {record} (`{}`): {what}",
                String::from_utf8_lossy(path)
            ))
        };
        let (mut node, readable) = parse_header(header, user, group, &self.owners).map_err(bad)?;
        node.target = match node.kind {
            NodeKind::Symlink => Some(target.clone()),
            _ if target.is_empty() => None,
            _ => {
                return Err(bad(
                    "only a symlink has a link target: the fields are out of step".into(),
                ));
            }
        };
        let Some(relative) = path.strip_prefix(b"/") else {
            return Err(bad("the path is not absolute".into()));
        };
        if relative.is_empty() {
            // The root itself (path `/`): its entries go into the root tree.
            return match node.kind {
                NodeKind::Dir => Ok(()),
                _ => Err(bad("`/` is not a directory".into())),
            };
        }
        let parts: Vec<&[u8]> = relative.split(|&b| b == b'/').collect();
        if parts.contains(&&b".."[..]) {
            return Err(bad("a `..` component is refused".into()));
        }
        if parts.iter().any(|p| p.is_empty() || *p == b".") {
            return Err(bad("an empty or `.` component is refused".into()));
        }
        let (name, dirs) = parts.split_last().expect("split gives one part at least");
        let arena = &mut self.listing.arena;
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
                    return Err(bad(
                        "its directory is not listed before it (entries follow their directory, as find lists them)"
                            .into(),
                    ));
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
            self.listing.skipped.push(Skipped {
                path: String::from_utf8_lossy(path).into_owned(),
                error: "find may not read or search this directory: it is backed up empty".into(),
            });
        }
        self.listing.entries += 1;
        Ok(())
    }
}

/// The node a record's numbers and names describe (without its name), and
/// whether find could read it.
fn parse_header(
    header: &[u8],
    user: &[u8],
    group: &[u8],
    owners: &Owners,
) -> Result<(Node, bool), String> {
    let text = std::str::from_utf8(header).map_err(|_| "its numbers are not text".to_string())?;
    let tokens: Vec<&str> = text.split(' ').collect();
    let [
        kind,
        mode,
        uid,
        gid,
        size,
        mtime,
        ctime,
        inode,
        device,
        links,
    ] = tokens[..]
    else {
        return Err(format!("expected type and 9 numbers, found `{text}`"));
    };
    let (kind, readable) = match kind {
        "f" => (NodeKind::File, true),
        "d" => (NodeKind::Dir, true),
        UNREADABLE_DIR => (NodeKind::Dir, false),
        "l" => (NodeKind::Symlink, true),
        "c" => (NodeKind::Chardev, true),
        "b" => (NodeKind::Blockdev, true),
        "p" => (NodeKind::Fifo, true),
        "s" => (NodeKind::Socket, true),
        other => return Err(format!("unknown type `{other}`")),
    };
    let mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("the mode `{mode}` is not octal permission bits"))?;
    let uid = number(uid, "uid")?;
    let gid = number(gid, "gid")?;
    let stat = Stat {
        kind,
        mode,
        uid,
        gid,
        size: number(size, "size")?,
        mtime_ns: time(mtime).ok_or_else(|| format!("the mtime `{mtime}` is not a time"))?,
        ctime_ns: time(ctime).ok_or_else(|| format!("the ctime `{ctime}` is not a time"))?,
        inode: number(inode, "inode")?,
        device: number(device, "device")?,
        links: number(links, "link count")?,
        // find has no directive for it: a tar header brings it.
        rdev: None,
    };
    let user = owner(user, uid).or_else(|| owners.users.get(&uid).cloned());
    let group = owner(group, gid).or_else(|| owners.groups.get(&gid).cloned());
    let node = stat_node(Vec::new(), stat, user, group);
    Ok((node, readable))
}

fn number<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("the {what} `{text}` is not a number"))
}

/// A time as find's `%T@` prints it: the seconds of `st_mtim`, a point,
/// then its nanoseconds and a zero (`-2.2500000000` is 2 s before the epoch
/// plus 0.25 s), in nanoseconds since the epoch, as `stat` gives it.
fn time(text: &str) -> Option<i64> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &fraction[..fraction.len().min(9)];
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// find prints the number for an owner without a name; that is no name.
fn owner(name: &[u8], id: u32) -> Option<String> {
    let name = String::from_utf8_lossy(name);
    (!name.is_empty() && name != id.to_string()).then(|| name.into_owned())
}

/// What a remote backup will do: what the listing holds, what the parent
/// snapshot already has, and what tar must fetch. Shown as it is by a check
/// run; [`Store::backup_remote`] carries it out.
#[derive(Debug)]
pub struct RemotePlan {
    pub host: String,
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
    /// What the snapshot records as its paths: the paths, then
    /// `stream:NAME` for each stream.
    labels: Vec<String>,
    started: Instant,
    arena: Arena,
    /// The arena index of each path in `fetch`.
    fetch_at: Vec<usize>,
    link_copies: Vec<(usize, usize)>,
}

impl RemotePlan {
    /// The contents of the list file [`tar_command`] reads: each path to
    /// fetch, ended by a NUL.
    pub fn fetch_list(&self) -> Vec<u8> {
        let mut list = Vec::with_capacity(self.fetch.iter().map(|p| p.len() + 1).sum());
        for path in &self.fetch {
            list.extend_from_slice(path);
            list.push(0);
        }
        list
    }
}

impl Store {
    /// Compares a host's listing of `paths` (the ones given to
    /// [`listing_command`]) with its latest snapshot of the same paths, or
    /// `options.parent`, and says what to fetch. This is where a remote
    /// backup starts: the index is brought up to date here, so the caller
    /// holds the store's shared lock from before this call until
    /// [`Store::backup_remote`] returns, as for any backup. A path that is not
    /// in the listing is an error, as a missing local path is.
    pub fn plan_remote_backup(
        &mut self,
        paths: &[String],
        listing: Listing,
        options: &BackupOptions,
    ) -> Result<RemotePlan> {
        self.plan_remote_backup_with_streams(paths, &[], listing, options)
    }

    /// As [`Store::plan_remote_backup`], for a snapshot that also holds the
    /// named `streams` (their output comes with
    /// [`Store::backup_remote_with_streams`]). The parent is the latest
    /// snapshot of the same paths and streams.
    pub fn plan_remote_backup_with_streams(
        &mut self,
        paths: &[String],
        streams: &[String],
        listing: Listing,
        options: &BackupOptions,
    ) -> Result<RemotePlan> {
        let started = Instant::now();
        self.prepare_backup()?;
        let paths = remote_paths(paths)?;
        check_stream_names(streams, &paths)?;
        let mut labels = paths.clone();
        labels.extend(streams.iter().map(|name| format!("stream:{name}")));
        let Listing {
            mut arena, skipped, ..
        } = listing;
        if let Some(missing) = paths.iter().find(|p| !is_listed(&arena, p)) {
            return Err(StoreError::Listing(format!(
                "`{missing}` is not in it: it does not exist on the host, find could not read it, or an exclude pattern matches it"
            )));
        }
        let parent = self.parent_for(options, &labels)?;
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
            host: options.host.clone(),
            paths,
            parent,
            files: plan.files,
            bytes: plan.bytes,
            unchanged: arena.unchanged,
            fetch: plan.fetch,
            fetch_bytes: plan.fetch_bytes,
            skipped,
            streams: streams.to_vec(),
            labels,
            started,
            arena,
            fetch_at: plan.fetch_at,
            link_copies: changes.link_copies,
        })
    }

    /// Carries out a plan with the tar [`tar_command`] made of its fetch
    /// list, and writes the snapshot (host `options.host`, which must be
    /// the plan's; the plan's paths and parent). Files tar did not deliver
    /// are left out and reported as skipped; a member that is not in the
    /// fetch list, or a stream cut off before its end, is refused and
    /// nothing is written. With nothing to fetch, the tar may be left out:
    /// pass an empty reader.
    pub fn backup_remote(
        &mut self,
        plan: RemotePlan,
        tar: impl Read,
        options: &BackupOptions,
        progress: &Progress,
    ) -> Result<BackupOutcome> {
        self.backup_remote_with_streams(plan, tar, Vec::new(), options, progress)
    }

    /// As [`Store::backup_remote`], then each named stream of the plan, in
    /// its order, read to its end into a file of its name at the
    /// snapshot's root. A stream whose reader fails (a reader that returns
    /// an error at its end when its command failed) writes no snapshot.
    pub fn backup_remote_with_streams(
        &mut self,
        plan: RemotePlan,
        tar: impl Read,
        streams: Vec<StreamSource<'_>>,
        options: &BackupOptions,
        progress: &Progress,
    ) -> Result<BackupOutcome> {
        if options.host != plan.host {
            return Err(StoreError::Setting(format!(
                "the plan was made for host `{}`, not `{}`: plan with the options the backup uses",
                plan.host, options.host
            )));
        }
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
            ..
        } = plan;
        self.write_backup(started, labels, parent, options, |_, sink| {
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

/// A named stream for [`Store::backup_remote_with_streams`]: opened when
/// its turn comes (after the tar), so only one stream of a host's
/// connection is read at a time.
pub struct StreamSource<'a> {
    pub name: String,
    pub open: Box<dyn FnOnce() -> io::Result<Box<dyn Read + 'a>> + 'a>,
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
/// components, sorted as local backup paths are, each once.
fn remote_paths(paths: &[String]) -> Result<Vec<String>> {
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

/// Whether `path` lies strictly below `outer`.
fn is_inside(path: &str, outer: &str) -> bool {
    path != outer
        && (outer == "/"
            || path
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/')))
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

/// Shell single quotes: safe for any string without NUL.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[derive(Default)]
struct Counts {
    files: u64,
    bytes: u64,
    fetch: Vec<Vec<u8>>,
    fetch_at: Vec<usize>,
    fetch_bytes: u64,
}

/// The comparison of a listing with the parent snapshot, directory by
/// directory in name order, as a local walk goes.
struct Walk<'s> {
    changes: Changes<'s>,
    plan: Counts,
}

impl Walk<'_> {
    fn visit(&mut self, arena: &mut Arena, at: usize, path: &mut Vec<u8>) -> Result<()> {
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
struct Fetched<'p> {
    paths: &'p [Vec<u8>],
    at: &'p [usize],
}

impl Fetched<'_> {
    /// Reads the tar into the fetched nodes; returns the ones it did not
    /// deliver, each reported in `skipped`.
    fn receive(
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
                    "member `{lossy}` is not in the fetch list: this is not the tar `tar_command` makes of this plan's list; nothing was written"
                )));
            };
            if std::mem::replace(&mut delivered[slot], true) {
                return Err(StoreError::Tar(format!(
                    "member `{lossy}` came twice: this is not the tar `tar_command` makes of this plan's list; nothing was written"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_times_count_nanoseconds_up_from_the_seconds() {
        assert_eq!(
            time("1700000000.1234567890"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(time("-2.2500000000"), Some(-1_750_000_000));
        assert_eq!(time("5"), Some(5_000_000_000));
        assert_eq!(time("5.5"), Some(5_500_000_000));
        for bad in ["", "x", "1.2e3", "1.-5", "99999999999999999999"] {
            assert_eq!(time(bad), None, "{bad}");
        }
    }

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

    #[test]
    fn owner_tables_name_the_owners_the_records_give_by_number() {
        let mut stream = b"nightshift-owners\0root:x:0:0:root:/root:/bin/sh\0www-data:x:33:33::/var/www:/usr/sbin/nologin\0\0root:x:0:\0adm:x:4:alice\0\0".to_vec();
        stream.extend_from_slice(b"d 755 0 0 4096 1.0 1.0 2 1 3\0\0\0/srv\0\0");
        stream.extend_from_slice(b"f 640 33 4 5 1.0 1.0 3 1 1\0\0\0/srv/a\0\0");
        stream.extend_from_slice(b"f 600 1000 1000 5 1.0 1.0 4 1 1\0\0\0/srv/b\0\0");
        let listing = parse_listing(&stream[..]).expect("a listing");
        assert_eq!(listing.len(), 3);
        let arena = &listing.arena;
        let srv = arena.child(0, b"srv").expect("srv");
        let node = |name: &[u8]| &arena.nodes[arena.child(srv, name).expect("listed")];
        assert_eq!(node(b"a").user.as_deref(), Some("www-data"));
        assert_eq!(node(b"a").group.as_deref(), Some("adm"));
        assert_eq!(node(b"b").user, None, "an unknown uid stays a number");
        assert!(
            parse_listing(&b"nightshift-owners\0root:x:0:0\0"[..]).is_err(),
            "cut-off tables"
        );
    }

    #[test]
    fn paths_are_quoted_and_nested_ones_listed_once() {
        let command = listing_command(
            &[
                "/srv/it's".into(),
                "/etc/nginx/".into(),
                "/etc/nginx/conf.d".into(),
            ],
            &["*.tmp".into(), "/var/cache/*".into()],
        )
        .expect("valid paths");
        assert!(
            command.starts_with("{ printf '%s\\000' nightshift-owners; "),
            "the owner tables come first: {command}"
        );
        assert!(
            command.contains("&& LC_ALL=C find -H '/etc' '/srv' -maxdepth 0 "),
            "{command}"
        );
        assert!(
            !command.contains("%u"),
            "no name lookup per entry: {command}"
        );
        assert!(
            command.contains("find -P '/etc/nginx' '/srv/it'\\''s' -xdev"),
            "{command}"
        );
        assert!(
            command.contains(r"\( -name '*.tmp' -o -path '/var/cache/*' \) -prune -o "),
            "{command}"
        );
        assert!(listing_command(&["relative".into()], &[]).is_err());
        assert!(listing_command(&["/a/../b".into()], &[]).is_err());
        assert!(listing_command(&[], &[]).is_err());
        assert_eq!(
            remote_paths(&["/a b".into(), "/a/b".into(), "/a//b/.".into()]).expect("valid paths"),
            ["/a/b", "/a b"],
            "sorted by components, as local paths are"
        );
    }
}
