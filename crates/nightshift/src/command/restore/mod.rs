//! `nightshift restore`: files of a snapshot back onto the controller or onto a host, with proof of what landed.

use crate::keys;
use crate::settings::Settings;
use crate::show::with_progress;
use anyhow::Context;
use clap::Args;
use indicatif::HumanBytes;
use nightshift_store::{
    Dropped, LockKind, Node, NodeKind, PackFiles, Progress, RestoreOptions, SnapshotEntry, Store,
};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
mod remote;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:PATH (latest:/etc/nginx, 7f3a91c2:/home, web1@2026-11-20T03:00:/etc)
    pub what: String,
    /// Where to restore: a local DIR, or HOST:DIR on an inventory host over SSH; a PATH lands under its own name
    #[arg(
        long,
        value_name = "[HOST:]DIR",
        required_unless_present_any = ["tar", "in_place"],
        conflicts_with_all = ["tar", "in_place"]
    )]
    pub to: Option<PathBuf>,
    /// Write a tar stream to FILE instead (- for standard output)
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Restore onto the snapshot's own host, where the files came from (asks first; --yes for scripts)
    #[arg(long, conflicts_with = "tar")]
    pub in_place: bool,
    /// Replace files that exist at the target (refused otherwise)
    #[arg(long)]
    pub overwrite: bool,
    /// Say what would be restored and what exists at the target; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before an --in-place restore
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Unpack on the host through `sudo -n` (to restore ownership and system files)
    #[arg(long = "become")]
    pub become_root: bool,
    /// Restore owners, setuid/setgid bits, device nodes and FIFOs as the snapshot recorded them; the default for in-place restores, off for restores onto another host or this controller
    #[arg(long)]
    pub keep_privileges: bool,
    /// Who the catalog and the audit log record as doing the restore [default: $USER]
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift restore SNAPSHOT[:PATH] --to DIR`.
pub fn run(settings: &Settings, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let (spec, path) = nightshift_store::split_path(&args.what);
    let remote = match &args.to {
        Some(to) => remote::destination(&to.to_string_lossy())?,
        None => None,
    };
    if remote.is_some() || args.in_place {
        return remote::remote(settings, args, spec, path, remote);
    }
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "restore")?;
    let entry = store.find_snapshot(spec)?;
    let Some(to) = &args.to else {
        return restore_tar(&store, &entry, path, args);
    };
    let options = RestoreOptions {
        keep_privileges: args.keep_privileges,
    };
    let entries = remote::listing(&store, &entry, path, options)?;
    let (in_the_way, linked) = at_target(&store, &entry, path, to, options)?;
    let existing = remote::Existing {
        count: in_the_way.len() as u64,
        first: in_the_way.into_iter().take(5).collect(),
        linked,
    };
    let target = remote::Destination {
        host: "localhost".into(),
        dir: to.display().to_string(),
    };
    let operator = args.operator.clone().unwrap_or_else(crate::operator);
    let record = |landed: &remote::Landed, failed: Option<&anyhow::Error>| {
        remote::record(settings, &entry, path, &target, &operator, landed, failed);
    };
    match existing.gate(&entries, &entry, &target.dir, args) {
        Ok(true) => return Ok(ExitCode::SUCCESS),
        Ok(false) => {}
        Err(err) => {
            record(&remote::Landed::default(), Some(&err));
            return Err(err);
        }
    }
    let progress = Progress::default();
    let outcome = with_progress(&progress, "restoring", || {
        store.restore_to_dir(&entry, path, to, 0, &progress, options)
    })?;
    for (path, error) in &outcome.failed {
        eprintln!("error: {path}: {error}");
    }
    let failed = !outcome.failed.is_empty();
    let summary = json!({
        "snapshot": entry.id,
        "path": path,
        "target": to,
        "files": outcome.files,
        "dirs": outcome.dirs,
        "bytes": outcome.bytes,
        "failed": outcome.failed.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        "dropped": outcome.dropped,
    });
    let (files, bytes, failures) = (outcome.files, outcome.bytes, outcome.failed.len());
    let dropped = dropped_line(&outcome.dropped, args.keep_privileges);
    record(&remote::Landed::local(outcome), None);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "snapshot {} ({}, {}) · {}",
            entry.short_id(),
            entry.snapshot.host,
            entry.snapshot.time.format("%Y-%m-%d %H:%M UTC"),
            path
        );
        let verdict = if failed {
            format!("{failures} entries FAILED")
        } else {
            "all verified (BLAKE3 of every chunk)".to_string()
        };
        println!(
            "{files} files, {} restored to {}, {verdict}",
            HumanBytes(bytes),
            to.display()
        );
        if let Some(dropped) = dropped {
            println!("{dropped}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `nightshift restore SNAPSHOT[:PATH] --tar FILE`: the same entries as a
/// tar stream, for piping into `tar x` on another machine.
fn restore_tar(
    store: &Store,
    entry: &nightshift_store::SnapshotEntry,
    path: &str,
    args: &RestoreArgs,
) -> anyhow::Result<ExitCode> {
    let target = args.tar.as_deref().unwrap_or(std::path::Path::new("-"));
    let options = RestoreOptions {
        keep_privileges: args.keep_privileges,
    };
    let outcome = if target == std::path::Path::new("-") {
        store.restore_to_tar(
            entry,
            path,
            std::io::BufWriter::new(std::io::stdout().lock()),
            options,
        )?
    } else {
        let file = std::fs::File::create(target)
            .with_context(|| format!("creating {}", target.display()))?;
        store.restore_to_tar(entry, path, std::io::BufWriter::new(file), options)?
    };
    for (path, error) in &outcome.failed {
        eprintln!("error: {path}: {error}");
    }
    eprintln!(
        "{} files, {} written as tar, all verified (BLAKE3 of every chunk)",
        outcome.files,
        HumanBytes(outcome.bytes)
    );
    if let Some(dropped) = dropped_line(&outcome.dropped, args.keep_privileges) {
        eprintln!("{dropped}");
    }
    Ok(if outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the restore would meet at `to`, by the snapshot's own names (raw
/// bytes, never a lossy rendering of them): the files and links in the way
/// of what it writes, and the symbolic links where the snapshot has a
/// directory (refused even with `--overwrite`; nothing under them is
/// looked at). Entries the restore does not write (sockets, names that
/// would climb out, device nodes and FIFOs it drops) are not in the way.
fn at_target(
    store: &Store,
    entry: &SnapshotEntry,
    path: &str,
    to: &std::path::Path,
    options: RestoreOptions,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;
    let top = store.node_at(entry, path)?;
    let mut packs = PackFiles::default();
    let mut children = |at: &std::path::Path, dir: &Node| -> anyhow::Result<Vec<(PathBuf, Node)>> {
        let Some(subtree) = dir.subtree else {
            return Ok(Vec::new());
        };
        let nodes = store.load_tree(subtree, &mut packs)?.nodes;
        Ok(nodes
            .into_iter()
            .rev()
            .map(|n| (at.join(OsStr::from_bytes(&n.name)), n))
            .collect())
    };
    let mut stack = if top.name.is_empty() {
        children(std::path::Path::new(""), &top)?
    } else {
        vec![(PathBuf::from(OsStr::from_bytes(&top.name)), top)]
    };
    let (mut in_the_way, mut linked) = (Vec::new(), Vec::new());
    while let Some((at, node)) = stack.pop() {
        let skipped = match node.kind {
            NodeKind::Socket => true,
            NodeKind::Chardev | NodeKind::Blockdev | NodeKind::Fifo => !options.keep_privileges,
            _ => false,
        };
        if skipped || !node.has_safe_name() {
            continue;
        }
        let there = std::fs::symlink_metadata(to.join(&at)).ok();
        let shown = || at.to_string_lossy().into_owned();
        if node.kind == NodeKind::Dir {
            if there.is_some_and(|m| m.file_type().is_symlink()) {
                linked.push(shown());
            } else {
                stack.extend(children(&at, &node)?);
            }
        } else if there.is_some_and(|m| !m.is_dir()) {
            in_the_way.push(shown());
        }
    }
    Ok((in_the_way, linked))
}

/// The line that says what a restore did not restore as recorded, when it
/// dropped anything: "dropped: setuid/setgid bits of 2 files, 1 device
/// node, owners (use --keep-privileges to keep them)".
pub(crate) fn dropped_line(dropped: &Dropped, keep_privileges: bool) -> Option<String> {
    if !dropped.any() {
        return None;
    }
    let count = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts = Vec::new();
    if dropped.setid > 0 {
        parts.push(format!(
            "setuid/setgid bits of {}",
            count(dropped.setid, "file", "files")
        ));
    }
    if dropped.devices > 0 {
        parts.push(count(dropped.devices, "device node", "device nodes"));
    }
    if dropped.fifos > 0 {
        parts.push(count(dropped.fifos, "FIFO", "FIFOs"));
    }
    if dropped.owners {
        parts.push("owners".to_string());
    }
    let root = nix::unistd::geteuid().is_root();
    let why = match (keep_privileges, dropped.owners && !root) {
        (false, false) => "use --keep-privileges to keep them",
        (false, true) => "use --keep-privileges to keep them; owners only as root",
        (true, _) => "owners are restored only as root",
    };
    Some(format!("dropped: {} ({why})", parts.join(", ")))
}
