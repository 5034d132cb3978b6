//! `nightshift restore SNAPSHOT[:PATH] --to HOST:DIR` and `--in-place`:
//! a restore onto a fleet host over SSH. The store writes a tar stream,
//! `tar -x` on the host unpacks it, and nightshift then hashes what landed
//! there and compares it with the snapshot, so the technician can show the
//! restore was right. Existing files are left alone unless `--overwrite`;
//! entries that would escape the target are never in the stream.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use indicatif::HumanBytes;
use nightshift_engine::reach::{connect, reach};
use nightshift_store::{LockKind, NodeKind, PackFiles, Progress, SnapshotEntry, Store};
use nightshift_transport::{Command, Host, shell_quote};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backup::with_progress;
use crate::cli::RestoreArgs;
use crate::keys;
use crate::settings::Settings;

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

/// One entry the restore writes: its path in the stream, its kind, and
/// its size.
pub(crate) struct Entry {
    pub path: String,
    pub dir: bool,
    pub file: bool,
    pub size: u64,
}

pub fn remote(
    settings: &Settings,
    args: &RestoreArgs,
    spec: &str,
    path: &str,
    target: Option<Destination>,
) -> anyhow::Result<ExitCode> {
    let plan = settings.parse_plan()?;
    let inventory = plan.inventory().into_owned();
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "restore")?;
    let snapshot = store.find_snapshot(spec)?;
    let store = std::sync::Arc::new(store);
    let target = match target {
        Some(target) => target,
        None => in_place(&snapshot, path, args)?,
    };
    let entries = listing(&store, &snapshot, path)?;
    let progress = Progress::default();
    progress.bytes_total.store(
        entries.iter().filter(|e| e.file).map(|e| e.size).sum(),
        Ordering::Relaxed,
    );
    let reach = reach(&inventory, &target.host)?;
    let ssh = settings.ssh_config(&inventory)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let operator = args.operator.clone().unwrap_or_else(crate::operator);
    let job = Job {
        store: &store,
        snapshot: &snapshot,
        path,
        target: &target,
        args,
        progress: &progress,
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
    report(&snapshot, path, &target, &outcome, args.json)?;
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
) -> anyhow::Result<Vec<Entry>> {
    let top = store.node_at(snapshot, path)?;
    let mut packs = PackFiles::default();
    let mut out = Vec::new();
    let mut stack = Vec::new();
    if top.name.is_empty() {
        stack.push((String::new(), top));
    } else {
        let name = String::from_utf8_lossy(&top.name).into_owned();
        stack.push((name, top));
    }
    while let Some((at, node)) = stack.pop() {
        if !at.is_empty() {
            out.push(Entry {
                path: at.clone(),
                dir: node.kind == NodeKind::Dir,
                file: node.kind == NodeKind::File,
                size: node.size,
            });
        }
        if let Some(subtree) = node.subtree {
            for child in store.load_tree(subtree, &mut packs)?.nodes {
                let name = String::from_utf8_lossy(&child.name).into_owned();
                let child_path = if at.is_empty() {
                    name
                } else {
                    format!("{at}/{name}")
                };
                stack.push((child_path, child));
            }
        }
    }
    Ok(out)
}

/// Files and links the restore would write that exist at the target.
#[derive(Debug, Default)]
pub(crate) struct Existing {
    pub count: u64,
    /// The first few of them.
    pub first: Vec<String>,
    /// Directories of the snapshot that are symbolic links at the target:
    /// writing into them could land outside it, so these are refused even
    /// with `--overwrite`.
    pub linked: Vec<String>,
}

impl Existing {
    /// With `--dry-run`, says what would be written and what is in the way
    /// and returns `true` (nothing more to do); otherwise refuses when
    /// something is in the way and `--overwrite` was not given.
    pub fn gate(
        &self,
        entries: &[Entry],
        snapshot: &SnapshotEntry,
        target: &str,
        args: &RestoreArgs,
    ) -> anyhow::Result<bool> {
        if args.dry_run {
            let files: Vec<&Entry> = entries.iter().filter(|e| e.file).collect();
            eprintln!(
                "would restore {} entries ({} files, {}) of snapshot {} to {target}; {} of them exist there{}",
                entries.len(),
                files.len(),
                HumanBytes(files.iter().map(|e| e.size).sum()),
                snapshot.short_id(),
                self.count,
                if self.count > 0 && !args.overwrite {
                    " (the restore would refuse without --overwrite)"
                } else {
                    ""
                }
            );
            for path in &self.first {
                eprintln!("  exists: {path}");
            }
            for path in &self.linked {
                eprintln!("  a symbolic link where the snapshot has a directory (refused): {path}");
            }
            return Ok(true);
        }
        anyhow::ensure!(
            self.linked.is_empty(),
            "{} under {target} {} a symbolic link where the snapshot has a directory; \
             nothing was written, because a restore never writes through a link; \
             remove the link or restore to another directory",
            self.linked.join(", "),
            if self.linked.len() == 1 { "is" } else { "are" }
        );
        anyhow::ensure!(
            self.count == 0 || args.overwrite,
            "{} files already exist under {target} ({}{}); nothing was written; add --overwrite to replace them",
            self.count,
            self.first.join(", "),
            if self.count > self.first.len() as u64 {
                ", …"
            } else {
                ""
            }
        );
        Ok(false)
    }
}

/// What a restore did at its target.
#[derive(Debug, Default)]
pub(crate) struct Landed {
    files: u64,
    bytes: u64,
    /// Entries the store could not give (damaged or escaping).
    failed: Vec<(String, String)>,
    /// The SHA-256 of each regular file the stream held.
    digests: Vec<(String, String)>,
    verified: u64,
    /// Files whose hash on the host differs, or that are missing there.
    differ: Vec<String>,
    error: Option<String>,
}

impl Landed {
    /// A local restore: every chunk was checked against its BLAKE3 id as
    /// it was read, so what was written is what was stored.
    pub fn local(outcome: nightshift_store::RestoreOutcome) -> Self {
        Self {
            verified: outcome.files,
            files: outcome.files,
            bytes: outcome.bytes,
            failed: outcome.failed,
            ..Self::default()
        }
    }

    pub fn failed(err: &anyhow::Error) -> Self {
        Self {
            error: Some(format!("{err:#}")),
            ..Self::default()
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.failed.is_empty() && self.differ.is_empty()
    }
}

/// One restore onto a host.
struct Job<'a> {
    store: &'a std::sync::Arc<Store>,
    snapshot: &'a SnapshotEntry,
    path: &'a str,
    target: &'a Destination,
    args: &'a RestoreArgs,
    progress: &'a Progress,
}

impl Job<'_> {
    async fn run(&self, host: &Host, entries: &[Entry]) -> anyhow::Result<Landed> {
        let (target, args) = (self.target, self.args);
        let (existing, cpus) = conflicts(host, target, entries, args.become_root).await?;
        let shown = format!("{}:{}", target.host, target.dir);
        if existing.gate(entries, self.snapshot, &shown, args)? {
            return Ok(Landed::default());
        }
        let mut landed = self.unpack(host).await?;
        let top: Vec<&str> = entries
            .iter()
            .filter(|e| !e.path.contains('/'))
            .map(|e| e.path.as_str())
            .collect();
        let found = hashes(host, target, &top, args.become_root, cpus).await?;
        for (file, digest) in &landed.digests {
            match found.get(file) {
                Some(there) if there == digest => landed.verified += 1,
                _ => landed.differ.push(file.clone()),
            }
        }
        Ok(landed)
    }

    /// Streams the snapshot's tar into `tar -x` on the host.
    async fn unpack(&self, host: &Host) -> anyhow::Result<Landed> {
        let (target, args) = (self.target, self.args);
        let untar = format!(
            "mkdir -p -- {dir} && exec tar --extract --file=- --directory={dir} --preserve-permissions{overwrite}",
            dir = shell_quote(&target.dir),
            overwrite = if args.overwrite {
                " --overwrite"
            } else {
                " --keep-old-files"
            }
        );
        let mut writing = host.write_stream(&command(untar, args.become_root)).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let (store, snapshot, path) = (
            self.store.clone(),
            self.snapshot.clone(),
            self.path.to_string(),
        );
        let producer = tokio::task::spawn_blocking(move || {
            let sink = Sender {
                tx,
                buf: Vec::with_capacity(1 << 20),
            };
            store.restore_to_tar_hashed(
                &snapshot,
                &path,
                sink,
                nightshift_store::RestoreOptions {
                    keep_privileges: true,
                },
            )
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
        let made = made?;
        Ok(Landed {
            files: made.files,
            bytes: made.bytes,
            failed: made.failed,
            digests: made.digests,
            ..Landed::default()
        })
    }
}

fn command(line: String, become_root: bool) -> Command {
    Command::new(line).become_root(become_root)
}

/// How many of the files and links the restore writes exist on the host
/// already, and the first few of them (directories may exist: they merge);
/// and how many CPUs the host has, for the verification.
async fn conflicts(
    host: &Host,
    target: &Destination,
    entries: &[Entry],
    become_root: bool,
) -> anyhow::Result<(Existing, usize)> {
    let script = format!(
        "echo \"cpus $(nproc 2>/dev/null || echo 1)\" >&2; \
         cd {} 2>/dev/null || {{ cat >/dev/null; echo 'conflicts 0' >&2; exit 0; }}; n=0; \
         while IFS= read -r p; do \
           case $p in \
             */) d=${{p%/}}; [ -L \"$d\" ] && printf 'linked %s\\n' \"$d\" >&2 ;; \
             *) if [ -L \"$p\" ] || {{ [ -e \"$p\" ] && [ ! -d \"$p\" ]; }}; then \
                  n=$((n+1)); [ $n -le 5 ] && printf 'exists %s\\n' \"$p\" >&2; \
                fi ;; \
           esac; \
         done; echo \"conflicts $n\" >&2",
        shell_quote(&target.dir)
    );
    let mut writing = host.write_stream(&command(script, become_root)).await?;
    let list: String = entries
        .iter()
        .filter(|e| !e.path.contains('\n'))
        .map(|e| format!("{}{}\n", e.path, if e.dir { "/" } else { "" }))
        .collect();
    writing.write_all(list.as_bytes()).await?;
    writing.shutdown().await?;
    let out = writing.finish().await?;
    anyhow::ensure!(
        out.status.success(),
        "cannot look at {}:{}: {}",
        target.host,
        target.dir,
        out.stderr.text().trim()
    );
    // A stream's command gives back its standard error only: the answer
    // comes on it.
    let text = out.stderr.text();
    let tagged = |tag: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(tag))
            .map(str::to_string)
            .collect()
    };
    let number = |tag: &str| {
        tagged(tag)
            .first()
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    let count = number("conflicts ").unwrap_or(0);
    let cpus = number("cpus ").map_or(1, |n| n as usize);
    let (first, linked) = (tagged("exists "), tagged("linked "));
    Ok((
        Existing {
            count,
            first,
            linked,
        },
        cpus,
    ))
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

/// At most this many hashing processes per host: beyond it the disk, not
/// the CPU, is what they wait for.
const MAX_HASHERS: usize = 8;

/// SHA-256 of every file under the restored top entries, as the host sees
/// them, by path relative to the target.
///
/// The host hashes with `openssl dgst` when it has it (several times
/// faster than coreutils' `sha256sum` on most CPUs) and with `sha256sum`
/// otherwise, in one process per CPU, each over its share of the files
/// (`split -n r/K/N`) on its own channel, so their outputs never mix.
async fn hashes(
    host: &Host,
    target: &Destination,
    top: &[&str],
    become_root: bool,
    cpus: usize,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    if top.is_empty() {
        return Ok(Default::default());
    }
    let workers = cpus.clamp(1, MAX_HASHERS);
    let lines = (1..=workers).map(|k| {
        let share = if workers == 1 {
            String::new()
        } else {
            format!(" | split -t '\\0' -n r/{k}/{workers}")
        };
        let line = format!(
            "cd {} && if command -v openssl >/dev/null 2>&1; then h='openssl dgst -sha256 -r'; \
             else h=sha256sum; fi; \
             find {} -type f -print0{share} | xargs -0 -r $h",
            shell_quote(&target.dir),
            top.iter()
                .map(|t| shell_quote(&format!("./{t}")))
                .collect::<Vec<_>>()
                .join(" ")
        );
        hash_share(host, command(line, become_root), &target.host)
    });
    let shares = futures::future::try_join_all(lines).await?;
    Ok(shares.into_iter().flatten().collect())
}

async fn hash_share(
    host: &Host,
    command: Command,
    name: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut reading = host.read_stream(&command).await?;
    let mut text = Vec::new();
    reading.read_to_end(&mut text).await?;
    let out = reading.finish().await?;
    anyhow::ensure!(
        out.status.success(),
        "hashing what landed on {name} failed: {}",
        out.stderr.text().trim()
    );
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(parse_sum)
        .collect())
}

/// One line of `sha256sum` (`HASH  ./PATH`) or `openssl dgst -r`
/// (`HASH *./PATH`); both start with a backslash and escape the path's
/// backslashes and newlines when it has any.
fn parse_sum(line: &str) -> Option<(String, String)> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hash, path) = line.split_at_checked(64)?;
    let path = path
        .strip_prefix("  ")
        .or_else(|| path.strip_prefix(" *"))?;
    let path = path.strip_prefix("./").unwrap_or(path);
    let path = if escaped {
        unescape(path)
    } else {
        path.to_string()
    };
    Some((path, hash.to_string()))
}

/// Undoes `\n` and `\\` in one pass, so `\\n` reads as a backslash and an `n`.
fn unescape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Writes a restore, whatever its outcome, to the catalog's restores table
/// and the audit log.
pub(crate) fn record(
    settings: &Settings,
    snapshot: &SnapshotEntry,
    path: &str,
    target: &Destination,
    operator: &str,
    landed: &Landed,
) {
    let outcome = if landed.ok() {
        "ok"
    } else if landed.files > 0 {
        "partial"
    } else {
        "failed"
    };
    let verified = if landed.ok() && landed.files > 0 && landed.verified == landed.files {
        "all"
    } else if landed.verified > 0 {
        "some"
    } else {
        "none"
    };
    let error = landed.error.clone().or_else(|| {
        landed.differ.first().map(|f| {
            format!(
                "{} files differ on the host, first {f}",
                landed.differ.len()
            )
        })
    });
    let row = nightshift_catalog::RestoreRecord {
        at: chrono::Utc::now(),
        operator: operator.to_string(),
        snapshot: snapshot.id.clone(),
        paths: vec![path.to_string()],
        target_host: target.host.clone(),
        target_path: target.dir.clone(),
        files: landed.files,
        bytes: landed.bytes,
        outcome: outcome.into(),
        verified: verified.into(),
        error,
    };
    crate::runs::note(settings, "restore", |c| async move {
        let id = c.record_restore(&row).await?;
        let arguments = json!({
            "restore": id,
            "snapshot": row.snapshot,
            "path": row.paths,
            "to": format!("{}:{}", row.target_host, row.target_path),
        });
        c.audit(&row.operator, "restore", &arguments, &row.outcome)
            .await?;
        Ok(())
    });
}

fn report(
    snapshot: &SnapshotEntry,
    path: &str,
    target: &Destination,
    landed: &Landed,
    json: bool,
) -> anyhow::Result<()> {
    for (entry, error) in &landed.failed {
        eprintln!("error: {entry}: {error}");
    }
    for file in landed.differ.iter().take(10) {
        eprintln!("error: {file} differs on {} from the snapshot", target.host);
    }
    if json {
        let value = json!({
            "snapshot": snapshot.id,
            "path": path,
            "target": format!("{}:{}", target.host, target.dir),
            "files": landed.files,
            "bytes": landed.bytes,
            "verified": landed.verified,
            "differ": landed.differ,
            "failed": landed.failed.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "snapshot {} ({}, {}) · {path}",
        snapshot.short_id(),
        snapshot.snapshot.host,
        snapshot.snapshot.time.format("%Y-%m-%d %H:%M UTC"),
    );
    let verdict = if landed.ok() {
        "all verified (SHA-256 on the target)".to_string()
    } else {
        format!(
            "{} verified, {} differ, {} could not be restored",
            landed.verified,
            landed.differ.len(),
            landed.failed.len()
        )
    };
    println!(
        "{} files, {} restored to {}:{}, {verdict}",
        landed.files,
        HumanBytes(landed.bytes),
        target.host,
        target.dir
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_sum;

    const HASH: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    #[test]
    fn reads_sha256sum_and_openssl_lines() {
        let plain = format!("{HASH}  ./etc/x y");
        let openssl = format!("{HASH} *./etc/x y");
        for line in [plain, openssl] {
            assert_eq!(
                parse_sum(&line),
                Some(("etc/x y".to_string(), HASH.to_string()))
            );
        }
    }

    #[test]
    fn undoes_the_escaping_of_newlines_and_backslashes() {
        let line = format!("\\{HASH}  ./a\\nb\\\\nc");
        assert_eq!(
            parse_sum(&line),
            Some(("a\nb\\nc".to_string(), HASH.to_string()))
        );
    }

    #[test]
    fn ignores_what_is_not_a_digest_line() {
        for line in ["sha256sum: ./x: Permission denied", "", "short  ./x"] {
            assert_eq!(parse_sum(line), None, "{line}");
        }
    }
}
