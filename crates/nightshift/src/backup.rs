//! `nightshift backup` and `nightshift restore` on the local store, with a
//! progress bar on a terminal and a summary at the end.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use nightshift_store::{BackupOptions, LockKind, Progress, Store, StoreError};
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
    let entries = crate::restore::listing(&store, &entry, path)?;
    let there = |e: &&crate::restore::Entry| std::fs::symlink_metadata(to.join(&e.path)).ok();
    let in_the_way: Vec<String> = entries
        .iter()
        .filter(|e| !e.dir && there(e).is_some_and(|m| !m.is_dir()))
        .map(|e| e.path.clone())
        .collect();
    let linked = entries
        .iter()
        .filter(|e| e.dir && there(e).is_some_and(|m| m.file_type().is_symlink()))
        .map(|e| e.path.clone())
        .collect();
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
        store.restore_to_dir(&entry, path, to, 0, &progress)
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
    });
    let (files, bytes, failures) = (outcome.files, outcome.bytes, outcome.failed.len());
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
    let outcome = if target == std::path::Path::new("-") {
        store.restore_to_tar(
            entry,
            path,
            std::io::BufWriter::new(std::io::stdout().lock()),
        )?
    } else {
        let file = std::fs::File::create(target)
            .with_context(|| format!("creating {}", target.display()))?;
        store.restore_to_tar(entry, path, std::io::BufWriter::new(file))?
    };
    for (path, error) in &outcome.failed {
        eprintln!("error: {path}: {error}");
    }
    eprintln!(
        "{} files, {} written as tar, all verified (BLAKE3 of every chunk)",
        outcome.files,
        HumanBytes(outcome.bytes)
    );
    Ok(if outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
