//! `nightshift restore SNAPSHOT[:PATH] --to HOST:DIR` and `--in-place`:
//! a restore onto a fleet host over SSH. The store writes a tar stream,
//! `tar -x` on the host unpacks it into a private staging directory,
//! nightshift hashes what landed there and compares it with the snapshot,
//! and only then are the entries renamed into place (see [`place`]), so the
//! technician can show the restore was right and no link at the target is
//! ever written through. Existing files are left alone unless
//! `--overwrite`; entries that would escape the target are never in the
//! stream.

mod outcome;
mod place;
mod verify;

use super::RestoreArgs;
use crate::keys;
use crate::settings::Settings;
use crate::show::with_progress;
use anyhow::Context;
use nightshift_engine::reach::{connect, reach};
use nightshift_store::{
    LockKind, NodeKind, PackFiles, Progress, RestoreOptions, SnapshotEntry, Store,
};
use nightshift_transport::{Command, Host, shell_quote};
use place::Pass;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;

use outcome::report;
pub(crate) use outcome::{Existing, Landed, record};
pub(crate) use place::Entry;

/// Where a restore goes on a host.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub host: String,
    pub dir: String,
}

/// `--to HOST:DIR` (HOST an inventory name, DIR absolute), or `None` for
/// a local directory.
pub fn destination(to: &str) -> anyhow::Result<Option<Destination>> {
    let Some((host, dir)) = to.split_once(':') else {
        return Ok(None);
    };
    if host.is_empty() || host.contains('/') {
        return Ok(None);
    }
    anyhow::ensure!(
        dir.starts_with('/'),
        "--to {to}: the directory on {host} must be absolute, like {host}:/tmp/restore"
    );
    Ok(Some(Destination {
        host: host.to_string(),
        dir: dir.to_string(),
    }))
}

pub fn remote(
    settings: &Settings,
    args: &RestoreArgs,
    spec: &str,
    path: &str,
    target: Option<Destination>,
) -> anyhow::Result<ExitCode> {
    let inventory = settings.plan()?.inventory;
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "restore")?;
    let snapshot = store.find_snapshot(spec)?;
    let store = std::sync::Arc::new(store);
    let target = match target {
        Some(target) => target,
        None => in_place(&snapshot, path, args)?,
    };
    // Owners, setuid/setgid bits and special files as recorded only back on
    // the snapshot's own host, unless asked for.
    let options = RestoreOptions {
        keep_privileges: args.keep_privileges || target.host == snapshot.snapshot.host,
    };
    let entries = listing(&store, &snapshot, path, options)?;
    let progress = Progress::default();
    progress.bytes_total.store(
        entries.iter().filter(|e| e.file).map(|e| e.size).sum(),
        Ordering::Relaxed,
    );
    let reach = reach(&inventory, &target.host)?;
    let ssh = crate::settings::ssh_config(settings, &inventory)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let operator = args.operator.clone().unwrap_or_else(crate::operator);
    let job = Job {
        store: &store,
        snapshot: &snapshot,
        path,
        target: &target,
        args,
        progress: &progress,
        options,
    };
    let outcome = with_progress(&progress, "restoring", || {
        runtime.block_on(async {
            let host = connect(&reach, &ssh).await?;
            let result = job.run(&host, &entries).await;
            host.close().await;
            result
        })
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => {
            let err = err.context(format!(
                "restoring to {}:{} failed",
                target.host, target.dir
            ));
            if !args.dry_run {
                record(
                    settings,
                    &snapshot,
                    path,
                    &target,
                    &operator,
                    &Landed::failed(&err),
                );
            }
            return Err(err);
        }
    };
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    record(settings, &snapshot, path, &target, &operator, &outcome);
    report(
        &snapshot,
        path,
        &target,
        &outcome,
        args.json,
        options.keep_privileges,
    )?;
    Ok(if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--in-place`: back where it came from, after a yes.
fn in_place(
    snapshot: &SnapshotEntry,
    path: &str,
    args: &RestoreArgs,
) -> anyhow::Result<Destination> {
    let parent = std::path::Path::new(path)
        .parent()
        .map_or("/".to_string(), |p| p.display().to_string());
    let target = Destination {
        host: snapshot.snapshot.host.clone(),
        dir: if path == "/" { "/".into() } else { parent },
    };
    if args.yes || args.dry_run {
        return Ok(target);
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "--in-place replaces files on {}; confirm with --yes when running from a script",
        target.host
    );
    eprint!(
        "restore {path} of snapshot {} over {}:{} in place, replacing what is there? [y/N] ",
        snapshot.short_id(),
        target.host,
        target.dir
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    anyhow::ensure!(
        matches!(answer.trim(), "y" | "Y" | "yes"),
        "nothing restored"
    );
    Ok(target)
}

/// Every entry under `path` as the tar stream names it.
pub(crate) fn listing(
    store: &Store,
    snapshot: &SnapshotEntry,
    path: &str,
    options: RestoreOptions,
) -> anyhow::Result<Vec<Entry>> {
    let top = store.node_at(snapshot, path)?;
    let mut packs = PackFiles::default();
    let mut out = Vec::new();
    let mut stack: Vec<(Option<usize>, Vec<u8>, nightshift_store::Node)> = Vec::new();
    if top.name.is_empty() {
        stack.push((None, Vec::new(), top));
    } else {
        stack.push((None, top.name.clone(), top));
    }
    while let Some((parent, at, node)) = stack.pop() {
        let here = if at.is_empty() {
            None
        } else if !in_stream(&node, options) {
            continue;
        } else {
            out.push(Entry {
                path: String::from_utf8_lossy(&at).into_owned(),
                raw: at.clone(),
                parent,
                dir: node.kind == NodeKind::Dir,
                file: node.kind == NodeKind::File,
                size: node.size,
            });
            Some(out.len() - 1)
        };
        if let Some(subtree) = node.subtree {
            for child in store.load_tree(subtree, &mut packs)?.nodes {
                let mut child_path = at.clone();
                if !child_path.is_empty() {
                    child_path.push(b'/');
                }
                child_path.extend_from_slice(&child.name);
                stack.push((here, child_path, child));
            }
        }
    }
    Ok(out)
}

/// Whether the store's tar stream holds this entry: not one whose name
/// would escape, not a socket, and no device node or FIFO unless they are
/// kept.
fn in_stream(node: &nightshift_store::Node, options: RestoreOptions) -> bool {
    let special = matches!(
        node.kind,
        NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev
    );
    node.has_safe_name() && node.kind != NodeKind::Socket && (options.keep_privileges || !special)
}

/// One restore onto a host.
struct Job<'a> {
    store: &'a std::sync::Arc<Store>,
    snapshot: &'a SnapshotEntry,
    path: &'a str,
    target: &'a Destination,
    args: &'a RestoreArgs,
    progress: &'a Progress,
    options: RestoreOptions,
}

impl Job<'_> {
    async fn run(&self, host: &Host, entries: &[Entry]) -> anyhow::Result<Landed> {
        let (target, args) = (self.target, self.args);
        let checked = self.place(host, entries, "", Pass::Check).await?;
        let existing = Existing::from_answer(&checked, entries);
        let shown = format!("{}:{}", target.host, target.dir);
        if existing.gate(entries, self.snapshot, &shown, args)? {
            return Ok(Landed::default());
        }
        let staging = staging_name();
        let result = self
            .stage_and_place(host, entries, &staging, checked.cpus)
            .await;
        if result.is_err() {
            self.discard(host, &staging).await;
        }
        result
    }

    /// Unpacks into the staging directory, verifies what landed there, and
    /// renames it into place.
    async fn stage_and_place(
        &self,
        host: &Host,
        entries: &[Entry],
        staging: &str,
        cpus: usize,
    ) -> anyhow::Result<Landed> {
        let mut landed = self.unpack(host, staging).await?;
        let staged = format!("{}/{staging}", self.target.dir.trim_end_matches('/'));
        let found = verify::hashes(host, &staged, self.args.become_root, cpus).await?;
        for (file, digest) in &landed.digests {
            match found.get(file) {
                Some(there) if there == digest => landed.verified += 1,
                _ => landed
                    .differ
                    .push(String::from_utf8_lossy(file).into_owned()),
            }
        }
        let moved = self.place(host, entries, staging, Pass::Move).await?;
        for (index, why) in moved.not_placed {
            let entry = &entries[index];
            if entry.file && landed.verified > 0 {
                landed.verified -= 1;
            }
            landed.failed.push((entry.path.clone(), why.to_string()));
        }
        Ok(landed)
    }

    /// Runs the placing script for `pass` (see [`place`]).
    async fn place(
        &self,
        host: &Host,
        entries: &[Entry],
        staging: &str,
        pass: Pass,
    ) -> anyhow::Result<place::Answer> {
        let script = place::script(
            entries,
            &self.target.dir,
            staging,
            pass,
            self.args.overwrite,
        );
        let mut writing = host
            .write_stream(&command("sh -s".into(), self.args.become_root))
            .await?;
        // The script may end before its last line, unread lines and all
        // (a target not there yet has nothing in the way): a command that
        // stopped reading is no failure here; its status and answer say
        // how it went.
        let sent = writing.write_all(&script).await;
        let out = writing.finish().await?;
        if let Err(err) = sent
            && err.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(err.into());
        }
        // A stream's command gives back its standard error only: the
        // answer comes on it.
        let mut said = out.stderr.head().to_vec();
        said.extend(out.stderr.tail());
        let answer = place::Answer::read(&said, pass);
        anyhow::ensure!(
            out.status.success() && !(pass == Pass::Move && answer.gone),
            "cannot {} {}:{}: {}",
            if pass == Pass::Move {
                "put the restore in place under"
            } else {
                "look at"
            },
            self.target.host,
            self.target.dir,
            answer.other.join("; ")
        );
        Ok(answer)
    }

    /// Streams the snapshot's tar into `tar -x` in a new private staging
    /// directory inside the target.
    async fn unpack(&self, host: &Host, staging: &str) -> anyhow::Result<Landed> {
        let (target, args) = (self.target, self.args);
        let untar = format!(
            "set -e; umask 077; mkdir -p -- {dir}; cd -P -- {dir}; mkdir -m 700 -- {staging}; cd -- {staging}; \
             [ \"$(stat -c %u:%a .)\" = \"$(id -u):700\" ] && [ -z \"$(ls -A)\" ]; \
             exec tar --extract --file=- --preserve-permissions{owners}",
            dir = shell_quote(&target.dir),
            owners = if self.keep_privileges() {
                ""
            } else {
                " --no-same-owner"
            },
        );
        let mut writing = host.write_stream(&command(untar, args.become_root)).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let (store, snapshot, path, options) = (
            self.store.clone(),
            self.snapshot.clone(),
            self.path.to_string(),
            self.options,
        );
        let producer = tokio::task::spawn_blocking(move || {
            let sink = Sender {
                tx,
                buf: Vec::with_capacity(1 << 20),
            };
            store.restore_to_tar_hashed(&snapshot, &path, sink, options)
        });
        let mut sent = Ok(());
        while let Some(buf) = rx.recv().await {
            self.progress
                .bytes_done
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            sent = writing.write_all(&buf).await;
            if sent.is_err() {
                // The host's tar is gone: stop the store's side too.
                break;
            }
        }
        drop(rx);
        let _ = writing.shutdown().await;
        let out = writing.finish().await?;
        let made = producer.await.context("the restore's tar writer died")?;
        anyhow::ensure!(
            out.status.success(),
            "unpacking on {} failed ({}): {}",
            target.host,
            out.status,
            out.stderr.text().trim()
        );
        sent.context("the stream to the host broke")?;
        let mut made = made?;
        // The stream keeps owners in its headers; `tar` as root restores
        // them unless told not to, which it is when they are dropped.
        made.dropped.owners = !options.keep_privileges && args.become_root;
        Ok(Landed {
            files: made.files,
            bytes: made.bytes,
            failed: made.failed,
            digests: made.digests,
            dropped: made.dropped,
            ..Landed::default()
        })
    }

    /// Removes what a failed restore left in its staging directory.
    async fn discard(&self, host: &Host, staging: &str) {
        let line = format!(
            "cd -P -- {} 2>/dev/null && [ -d {staging} ] && rm -rf -- {staging}",
            shell_quote(&self.target.dir)
        );
        let _ = host
            .exec(&command(line, self.args.become_root), &mut |_, _| {})
            .await;
    }

    fn keep_privileges(&self) -> bool {
        self.options.keep_privileges
    }
}

/// A name for the staging directory no other restore picks.
fn staging_name() -> String {
    let seed = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    format!(
        ".nightshift-restore-{}",
        &blake3::hash(seed.as_bytes()).to_hex()[..16]
    )
}

fn command(line: String, become_root: bool) -> Command {
    Command::new(line).become_root(become_root)
}

/// A `Write` that hands 1 MiB buffers to the async side.
struct Sender {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for Sender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20));
        self.tx
            .blocking_send(buf)
            .map_err(|_| std::io::Error::other("the host stopped reading"))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
