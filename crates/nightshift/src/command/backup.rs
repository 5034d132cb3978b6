//! `nightshift backup` and `nightshift restore` on the local store, with a
//! progress bar on a terminal and a summary at the end.

use crate::keys;
use crate::settings::Settings;
use crate::show::with_progress;
use clap::Args;
use indicatif::HumanBytes;
use nightshift_store::{BackupOptions, LockKind, Progress, StoreError};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(required_unless_present = "stream", conflicts_with = "stream")]
    pub paths: Vec<PathBuf>,
    /// The host the data is on; this command backs up localhost (remote hosts
    /// are backed up by a playbook's backup step)
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Back up standard input as one file of this name (pg_dumpall | nightshift backup --stream db.sql)
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Label the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Compare against this snapshot instead of the latest of the same host and paths
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// When this backup creates the store, create it unencrypted (for disks
    /// that are encrypted underneath)
    #[arg(long)]
    pub no_encryption: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift backup`.
pub fn run(settings: &Settings, args: &BackupArgs) -> anyhow::Result<ExitCode> {
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
    let row = crate::record::record(entry, None);
    crate::record::note(settings, "snapshot", |c| async move {
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
