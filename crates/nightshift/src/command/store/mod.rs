//! `nightshift store`: the chunk store itself, checked, pruned, repaired, keyed.

use crate::keys;
use crate::settings::Settings;
use crate::show::local_time;
use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use indicatif::HumanBytes;
use nightshift_store::{CheckOptions, Encryption, LockKind, PruneOptions, StoreConfig, StoreError};
use serde_json::json;
use std::process::ExitCode;

use key::KeyCommand;

mod key;
mod prune;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the store under the data directory (a first backup does this too)
    Init {
        /// zstd level for chunks, 1 to 22
        #[arg(long, default_value_t = 3)]
        compression_level: i32,
        /// Close packs at this size in MiB
        #[arg(long, default_value_t = 16, value_name = "MIB")]
        pack_size: u32,
        /// Store chunks unencrypted (for disks that are encrypted underneath)
        #[arg(long)]
        no_encryption: bool,
    },
    /// Manage the passphrases that open the encrypted store
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check the store's structure; with --read-data, every chunk's content
    Check {
        /// Read, decompress and hash every pack
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read this share of the store's bytes (5%), the packs verified longest ago first
        #[arg(long, value_name = "PERCENT")]
        read_data_subset: Option<String>,
        /// Only report how much has never been read and verified, and the oldest verification
        #[arg(long, conflicts_with_all = ["read_data", "read_data_subset"])]
        status: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Free the space of data no snapshot needs: mark now, delete on a later run
    Prune {
        /// Say what would be marked, repacked and deleted, and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Rewrite packs less than this share of which is still needed
        #[arg(long, value_name = "PERCENT", default_value = "50%")]
        repack_below: String,
        /// Then repack the least needed packs until unneeded bytes are at most this share of needed ones
        #[arg(long, value_name = "PERCENT", default_value = "5%")]
        max_unused: String,
        /// How long packs stay marked before a prune deletes them; longer than your longest backup
        #[arg(long, value_name = "DURATION", default_value = "24h",
              value_parser = nightshift_plan::Duration::parse_allowing_zero)]
        delete_delay: std::time::Duration,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Sizes: snapshots, packs, chunks, bytes on disk, index memory
    Stats {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the packs' own headers
    RebuildIndex,
    /// After check found damage: salvage what still reads, rebuild the index, record damaged snapshots
    Repair {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove locks left by processes that are gone; --all removes every lock
    Unlock {
        /// Also remove locks of live or unknown processes (other hosts): only when you know they are gone
        #[arg(long)]
        all: bool,
    },
}

/// `nightshift store init|check|stats|rebuild-index`.
pub fn run(settings: &Settings, command: StoreCommand) -> anyhow::Result<ExitCode> {
    let root = settings.store_dir();
    match command {
        StoreCommand::Init {
            compression_level,
            pack_size,
            no_encryption,
        } => {
            let mut config = StoreConfig::new(String::new());
            config.compression.level = compression_level;
            config.pack.target_size = pack_size.saturating_mul(1 << 20);
            if no_encryption {
                config.encryption = Encryption::None;
            }
            let store = keys::create(settings, config)?;
            let how = if no_encryption {
                "unencrypted"
            } else {
                "encrypted"
            };
            println!(
                "created {how} store {} at {}",
                &store.config().id[..8],
                root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Key(command) => key::run(settings, command),
        StoreCommand::Unlock { all } => {
            let store = keys::open_store(settings)?;
            let removed = store.unlock(all)?;
            for info in &removed {
                println!("removed the {info}");
            }
            let left = store.locks()?;
            for (_, info) in &left {
                println!(
                    "kept the {info}: its process may still run (on another host, it cannot be checked from here); --all removes it"
                );
            }
            if removed.is_empty() && left.is_empty() {
                println!("the store has no locks");
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Check {
            status: true, json, ..
        } => verification_status(settings, json),
        StoreCommand::Check {
            read_data,
            read_data_subset,
            json,
            ..
        } => check(settings, read_data, read_data_subset.as_deref(), json),
        StoreCommand::Stats { json } => stats(settings, json),
        StoreCommand::Prune {
            dry_run,
            repack_below,
            max_unused,
            delete_delay,
            json,
        } => {
            let options = PruneOptions {
                repack_below: share(&repack_below, "--repack-below")?,
                max_unused: share(&max_unused, "--max-unused")?,
                delete_delay,
                dry_run,
                threads: 0,
            };
            prune::run(settings, &options, json)
        }
        StoreCommand::Repair { json } => prune::repair(settings, json),
        StoreCommand::RebuildIndex => {
            // The index may be what is damaged: do not read it first.
            let mut store = keys::open_store_unindexed(settings)?;
            let lock = keys::lock(&store, LockKind::Exclusive, "rebuild-index")?;
            let chunks = store.rebuild_index()?;
            drop(lock);
            println!(
                "index rebuilt from {} packs: {chunks} chunks",
                store.index().packs().len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(
    settings: &Settings,
    read_data: bool,
    subset: Option<&str>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let share = match subset {
        Some(text) => share(text, "--read-data-subset")?,
        None if read_data => 1.0,
        None => 0.0,
    };
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "check")?;
    let report = store.check(&CheckOptions {
        read_data: share,
        threads: 0,
    })?;
    let figures = json!({
        "snapshots": report.snapshots, "packs": report.packs, "chunks": report.chunks,
        "packs_read": report.packs_read, "bytes_read": report.bytes_read,
        "errors": report.problems.iter().filter(|p| p.is_error()).count(),
    });
    let ok = report.is_ok();
    crate::record::note(settings, "check", |c| async move {
        c.record_verification(&nightshift_catalog::Verification {
            kind: "store_check",
            host: None,
            snapshot: None,
            ok,
            figures: &figures,
            at: Utc::now(),
            job: None,
        })
        .await?;
        Ok(())
    });
    if json_out {
        let value = json!({
            "ok": report.is_ok(),
            "snapshots": report.snapshots, "packs": report.packs, "chunks": report.chunks,
            "packs_read": report.packs_read, "bytes_read": report.bytes_read,
            "problems": report.problems.iter().map(|p| json!({"error": p.is_error(), "message": p.to_string()})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for problem in &report.problems {
            let label = if problem.is_error() { "error" } else { "note" };
            println!("{label}: {problem}");
        }
        println!(
            "{} snapshots, {} packs, {} chunks checked; {} packs ({}) read and hashed: {}",
            report.snapshots,
            report.packs,
            report.chunks,
            report.packs_read,
            HumanBytes(report.bytes_read),
            if report.is_ok() {
                "no errors"
            } else {
                "ERRORS FOUND"
            }
        );
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A percentage such as `10%` or `10`, as a share from 0.0 to 1.0.
pub fn share(text: &str, flag: &str) -> anyhow::Result<f64> {
    let percent: f64 = text
        .trim_end_matches('%')
        .parse()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .with_context(|| format!("{flag} {text}: give a percentage such as 10%"))?;
    Ok(percent / 100.0)
}

/// `nightshift store check --status`.
fn verification_status(settings: &Settings, json_out: bool) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let status = store.verification_status();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} packs, {} stored; never read and verified: {} packs, {}",
        status.packs,
        HumanBytes(status.bytes),
        status.unverified_packs,
        HumanBytes(status.unverified_bytes)
    );
    match status.oldest {
        Some(when) => println!("oldest verification: {}", local_time(when)),
        None => println!(
            "no pack has been verified yet: run `nightshift store check --read-data-subset 5%` daily"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(settings: &Settings, json_out: bool) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let snapshots = store.snapshots()?;
    let index = store.index();
    let stored: u64 = index.iter().map(|l| u64::from(l.blob.stored_len)).sum();
    let mut on_disk = 0;
    for pack in store.packs_on_disk()? {
        let path = store.pack_path(pack);
        on_disk += std::fs::metadata(&path)
            .map_err(|error| StoreError::Io {
                action: "reading",
                path,
                error,
            })?
            .len();
    }
    let per_chunk = index.memory_bytes().checked_div(index.len()).unwrap_or(0);
    let marked = index.marked_packs().count();
    let config = store.config();
    let value = json!({
        "snapshots": snapshots.len(),
        "packs": index.packs().len(),
        "packs_marked_for_deletion": marked,
        "chunks": index.len(),
        "stored_bytes": stored,
        "pack_bytes_on_disk": on_disk,
        "index_memory_bytes": index.memory_bytes(),
        "index_bytes_per_chunk": per_chunk,
        "format_version": config.version,
        "chunker": { "min": config.chunker.min_size, "avg": config.chunker.avg_size, "max": config.chunker.max_size },
        "compression_level": config.compression.level,
        "pack_target_size": config.pack.target_size,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("store {} (format {})", &config.id[..8], config.version);
    println!("snapshots        {}", snapshots.len());
    println!(
        "packs            {} ({} on disk; {marked} marked for deletion by prune)",
        index.packs().len(),
        HumanBytes(on_disk)
    );
    println!(
        "chunks           {} ({} stored)",
        index.len(),
        HumanBytes(stored)
    );
    println!(
        "index in memory  {} ({per_chunk} bytes per chunk)",
        HumanBytes(index.memory_bytes() as u64)
    );
    println!(
        "chunker          FastCDC {}/{}/{} KiB, zstd level {}, packs of {}",
        config.chunker.min_size / 1024,
        config.chunker.avg_size / 1024,
        config.chunker.max_size / 1024,
        config.compression.level,
        HumanBytes(config.pack.target_size.into())
    );
    Ok(ExitCode::SUCCESS)
}
