//! `nightshift snapshots`, `nightshift ls` and `nightshift store ...`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Local, Utc};
use comfy_table::{Table, presets};
use indicatif::HumanBytes;
use nightshift_store::{
    CheckOptions, Encryption, LockKind, NodeKind, PackFiles, PruneOptions, StoreConfig, StoreError,
};
use serde_json::json;

use crate::cli::{ForgetArgs, LsArgs, SnapshotsArgs, StoreCommand};
use crate::keys::{self, store_dir};
use crate::settings::Settings;
use nightshift_plan::inventory::Retention;

pub fn local_time(time: DateTime<Utc>) -> String {
    time.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The store's snapshots, oldest first; only `host`'s when given.
pub(crate) fn snapshots_of(
    store: &nightshift_store::Store,
    host: Option<&str>,
) -> anyhow::Result<Vec<nightshift_store::SnapshotEntry>> {
    Ok(store
        .snapshots()?
        .into_iter()
        .filter(|e| host.is_none_or(|h| e.snapshot.host == h))
        .collect())
}

/// `nightshift snapshots`.
pub fn snapshots(settings: &Settings, args: &SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let mut all = snapshots_of(&store, args.host.as_deref())?;
    if let Some(path) = &args.path {
        let path = path.trim_end_matches('/');
        all.retain(|e| {
            e.snapshot.paths.iter().any(|p| {
                let p = p.trim_end_matches('/');
                path == p
                    || path.starts_with(&format!("{p}/"))
                    || p.starts_with(&format!("{path}/"))
            })
        });
    }
    let damaged = store.damaged_snapshots();
    if args.json {
        let rows: Vec<_> = all
            .iter()
            .map(|e| {
                let mut value = serde_json::to_value(&e.snapshot).expect("serializes");
                value["id"] = json!(e.id);
                value["damaged_paths"] = json!(damaged.get(&e.id).map(|d| d.lost.len()));
                value
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["ID", "TIME", "HOST", "PATHS", "FILES", "SIZE", "TAGS"]);
    for e in &all {
        let s = &e.snapshot;
        table.add_row([
            e.short_id().to_string(),
            local_time(s.time),
            s.host.clone(),
            s.paths.join(" "),
            s.summary.files.to_string(),
            HumanBytes(s.summary.bytes_total).to_string(),
            match damaged.get(&e.id) {
                Some(damage) => format!(
                    "{} DAMAGED: {} paths lost",
                    s.tags.join(","),
                    damage.lost.len()
                )
                .trim_start()
                .to_string(),
                None => s.tags.join(","),
            },
        ]);
    }
    println!("{table}");
    println!("{} snapshots", all.len());
    Ok(ExitCode::SUCCESS)
}

/// `nightshift ls SNAPSHOT[:PATH]`: a directory's entries, or with
/// `--recursive` everything under it, depth first.
pub fn ls(settings: &Settings, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let (spec, inline) = nightshift_store::split_path(&args.snapshot);
    let path = if args.snapshot.contains(":/") {
        inline
    } else {
        args.path.as_str()
    };
    let entry = store.find_snapshot(spec)?;
    let start = store.node_at(&entry, path)?;
    let base = path.trim_end_matches('/').to_string();
    let mut packs = PackFiles::default();
    let mut stack = vec![(base.clone(), start, 0)];
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let style = if args.json {
        Style::Json
    } else if args.long {
        Style::Long
    } else {
        Style::Short
    };
    while let Some((path, node, depth)) = stack.pop() {
        let is_dir = node.kind == NodeKind::Dir;
        if depth > 0 || !is_dir {
            match print_entry(&mut out, &path, &node, style) {
                // `nightshift ls ... | head` is done, not failed.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS);
                }
                other => other.context("writing the listing")?,
            }
        }
        let descend = depth == 0 || args.recursive;
        if let (true, Some(subtree)) = (is_dir && descend, node.subtree) {
            let tree = store.load_tree(subtree, &mut packs)?;
            for child in tree.nodes.into_iter().rev() {
                stack.push((format!("{path}/{}", child.name_lossy()), child, depth + 1));
            }
        }
    }
    match out.flush() {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("writing the listing")?
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// How `ls` prints an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Short,
    Long,
    Json,
}

fn print_entry(
    out: &mut impl Write,
    path: &str,
    node: &nightshift_store::Node,
    style: Style,
) -> std::io::Result<()> {
    let mtime = DateTime::from_timestamp_nanos(node.mtime_ns);
    let path = if path.is_empty() { "/" } else { path };
    if style == Style::Short {
        let slash = if node.kind == NodeKind::Dir { "/" } else { "" };
        return writeln!(out, "{}{slash}", path.escape_debug());
    }
    if style == Style::Json {
        let value = json!({
            "path": path, "type": node.kind, "mode": format!("{:04o}", node.mode),
            "user": node.user.clone().unwrap_or_else(|| node.uid.to_string()),
            "group": node.group.clone().unwrap_or_else(|| node.gid.to_string()),
            "size": node.size, "mtime": mtime.to_rfc3339(),
            "target": node.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
        });
        return writeln!(out, "{value}");
    }
    let letter = match node.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let target = node
        .target
        .as_ref()
        .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
        .unwrap_or_default();
    writeln!(
        out,
        "{letter}{:04o} {:>8} {:>8} {:>12} {} {}{target}",
        node.mode,
        node.user.clone().unwrap_or_else(|| node.uid.to_string()),
        node.group.clone().unwrap_or_else(|| node.gid.to_string()),
        node.size,
        local_time(mtime),
        path.escape_debug()
    )
}

/// `nightshift store init|check|stats|rebuild-index`.
pub fn run(settings: &Settings, command: StoreCommand) -> anyhow::Result<ExitCode> {
    let root = store_dir(settings);
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
        StoreCommand::Key(command) => keys::run(settings, command),
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
            crate::prune::run(settings, &options, json)
        }
        StoreCommand::Repair { json } => crate::prune::repair(settings, json),
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
    crate::runs::note(settings, "check", |c| async move {
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

/// The store's form of a policy. A `keep_within` beyond chrono's range
/// (some 292 billion years) keeps everything, as it means to.
pub fn policy_of(r: Retention) -> nightshift_store::RetentionPolicy {
    nightshift_store::RetentionPolicy {
        last: r.keep_last,
        hourly: r.keep_hourly,
        daily: r.keep_daily,
        weekly: r.keep_weekly,
        monthly: r.keep_monthly,
        yearly: r.keep_yearly,
        within: r
            .keep_within
            .map(|d| chrono::Duration::from_std(d.0).unwrap_or(chrono::Duration::MAX)),
        tags: r.keep_tags,
    }
}

/// Decisions by each host's inventory policy; a host without one keeps
/// every snapshot, and says so.
fn by_inventory(
    settings: &Settings,
    snapshots: &[nightshift_store::SnapshotEntry],
) -> anyhow::Result<Vec<nightshift_store::Decision>> {
    let inventory = settings.plan()?.inventory;
    let mut hosts: Vec<&str> = snapshots.iter().map(|s| s.snapshot.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let mut decisions = Vec::new();
    for host in hosts {
        let mine: Vec<_> = snapshots
            .iter()
            .filter(|s| s.snapshot.host == host)
            .cloned()
            .collect();
        match inventory.retention(host) {
            Some(r) => decisions.extend(nightshift_store::decide(&mine, &policy_of(r), &Local)),
            None => {
                eprintln!(
                    "note: no retention policy for host {host} in the inventory: its snapshots are kept"
                );
                let why = format!("no retention policy for host {host}");
                decisions.extend(mine.into_iter().map(|snapshot| nightshift_store::Decision {
                    snapshot,
                    reasons: vec![why.clone()],
                }));
            }
        }
    }
    decisions.sort_by_key(|d| d.snapshot.snapshot.time);
    Ok(decisions)
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

/// `nightshift forget`: applies a retention policy to the snapshots: the
/// one the options give, or without options each host's from the inventory.
pub fn forget(settings: &Settings, args: &ForgetArgs) -> anyhow::Result<ExitCode> {
    let policy = policy_of(Retention {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within,
        keep_tags: args.keep_tags.clone(),
    });
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "forget")?;
    let snapshots = snapshots_of(&store, args.host.as_deref())?;
    let decisions = if policy.is_empty() {
        by_inventory(settings, &snapshots)?
    } else {
        nightshift_store::decide(&snapshots, &policy, &Local)
    };
    let doomed: Vec<String> = decisions
        .iter()
        .filter(|d| !d.keep())
        .map(|d| d.snapshot.id.clone())
        .collect();
    if args.json {
        let rows: Vec<_> = decisions
            .iter()
            .map(|d| {
                json!({
                    "id": d.snapshot.id, "time": d.snapshot.snapshot.time,
                    "host": d.snapshot.snapshot.host, "paths": d.snapshot.snapshot.paths,
                    "keep": d.keep(), "reasons": d.reasons,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = Table::new();
        table.load_preset(presets::NOTHING);
        table.set_header(["ID", "TIME", "HOST", "PATHS", "DECISION", "WHY"]);
        for d in &decisions {
            let s = &d.snapshot.snapshot;
            table.add_row([
                d.snapshot.short_id().to_string(),
                local_time(s.time),
                s.host.clone(),
                s.paths.join(" "),
                if d.keep() { "keep" } else { "forget" }.to_string(),
                d.reasons.join(", "),
            ]);
        }
        println!("{table}");
    }
    let verb = if args.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    if !args.dry_run {
        store.forget(&doomed)?;
    }
    eprintln!(
        "{verb} {} of {} snapshots; their data is freed by `nightshift store prune`",
        doomed.len(),
        decisions.len()
    );
    Ok(ExitCode::SUCCESS)
}
