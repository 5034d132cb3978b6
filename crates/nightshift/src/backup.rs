//! `nightshift backup` and `nightshift restore` on the local store, with a
//! progress bar on a terminal and a summary at the end.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use nightshift_store::{
    BackupOptions, Dropped, LockKind, Node, NodeKind, PackFiles, Progress, RestoreOptions,
    SnapshotEntry, Store, StoreError,
};
use serde_json::json;

use crate::cli::{BackupArgs, RestoreArgs};
use crate::keys;
use crate::settings::Settings;

/// `nightshift backup`.
pub fn backup(settings: &Settings, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    if args.host != "localhost" {
        anyhow::bail!(
            "`nightshift backup` reads local files; back up {} with a playbook's backup step (`nightshift run`)",
            args.host
        );
    }
    let mut store = keys::open_or_create(settings, args.no_encryption)?;
    let _lock = keys::lock(&store, LockKind::Shared, "backup")?;
    let options = BackupOptions {
        host: args.host.clone(),
        tags: args.tags.clone(),
        parent: args.parent.clone(),
        threads: 0,
    };
    let progress = Progress::default();
    let outcome = with_progress(&progress, "backing up", || match &args.stream {
        Some(name) => store.backup_stream(name, std::io::stdin().lock(), &options, &progress),
        None => store.backup_paths(&args.paths, &options, &progress),
    })
    .map_err(|err| match err {
        StoreError::DiskFull { .. } => anyhow::Error::new(err).context(
            "the backup stopped: no snapshot was written, and the next backup reuses every pack already written",
        ),
        other => other.into(),
    })?;
    for skipped in &outcome.skipped {
        eprintln!("warning: skipped {}: {}", skipped.path, skipped.error);
    }
    let entry = &outcome.snapshot;
    let row = crate::runs::record(entry, None);
    crate::runs::note(settings, "snapshot", |c| async move {
        Ok(c.record_snapshot(&row).await?)
    });
    let s = &entry.snapshot.summary;
    if args.json {
        let mut value = serde_json::to_value(&entry.snapshot)?;
        value["id"] = json!(entry.id);
        value["skipped"] = json!(
            outcome
                .skipped
                .iter()
                .map(|s| json!({"path": s.path, "error": s.error}))
                .collect::<Vec<_>>()
        );
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let rate = s.bytes_read as f64 / s.duration_secs.max(1e-3);
        println!(
            "snapshot {} saved ({}, {})",
            entry.short_id(),
            entry.snapshot.host,
            entry.snapshot.paths.join(" ")
        );
        println!(
            "files {} ({} unchanged), dirs {}, {} in all",
            s.files,
            s.files_unchanged,
            s.dirs,
            HumanBytes(s.bytes_total)
        );
        println!(
            "read {}, new {} stored as {} in {} chunks (dedup {:.2}x, compression {:.2}x)",
            HumanBytes(s.bytes_read),
            HumanBytes(s.new_bytes_raw),
            HumanBytes(s.new_bytes_stored),
            s.new_chunks,
            s.dedup_ratio(),
            s.compression_ratio()
        );
        println!(
            "took {:.1}s, {}/s",
            s.duration_secs,
            HumanBytes(rate as u64)
        );
    }
    if outcome.skipped.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "snapshot {} is incomplete: {} entries could not be read",
            entry.short_id(),
            outcome.skipped.len()
        );
        Ok(ExitCode::from(3))
    }
}

/// `nightshift restore SNAPSHOT[:PATH] --to DIR`.
pub fn restore(settings: &Settings, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let (spec, path) = nightshift_store::split_path(&args.what);
    let remote = match &args.to {
        Some(to) => crate::restore::destination(&to.to_string_lossy())?,
        None => None,
    };
    if remote.is_some() || args.in_place {
        return crate::restore::remote(settings, args, spec, path, remote);
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
    let entries = crate::restore::listing(&store, &entry, path, options)?;
    let (in_the_way, linked) = at_target(&store, &entry, path, to, options)?;
    let existing = crate::restore::Existing {
        count: in_the_way.len() as u64,
        first: in_the_way.into_iter().take(5).collect(),
        linked,
    };
    let target = crate::restore::Destination {
        host: "localhost".into(),
        dir: to.display().to_string(),
    };
    let operator = args.operator.clone().unwrap_or_else(crate::operator);
    let record = |landed: &crate::restore::Landed| {
        crate::restore::record(settings, &entry, path, &target, &operator, landed);
    };
    match existing.gate(&entries, &entry, &target.dir, args) {
        Ok(true) => return Ok(ExitCode::SUCCESS),
        Ok(false) => {}
        Err(err) => {
            record(&crate::restore::Landed::failed(&err));
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
    record(&crate::restore::Landed::local(outcome));
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

/// Runs `work` while a bar on standard error shows the progress counters;
/// nothing is drawn when standard error is not a terminal.
pub fn with_progress<T>(progress: &Progress, verb: &str, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .expect("a valid template"),
    );
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                bar.set_length(progress.bytes_total.load(Ordering::Relaxed));
                bar.set_position(progress.bytes_done.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{verb} {}/{} files",
                    progress.files_done.load(Ordering::Relaxed),
                    progress.files_total.load(Ordering::Relaxed)
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}
