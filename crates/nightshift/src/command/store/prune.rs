//! `nightshift store prune` and `store repair`: what they changed, said in
//! bytes and paths a sysadmin can weigh, and what remains to do.

use crate::keys;
use crate::settings::Settings;
use crate::show::local_time;
use indicatif::{HumanBytes, ProgressBar};
use nightshift_store::{LockKind, Packs, PruneOptions, PruneReport, RepairReport};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(settings: &Settings, options: &PruneOptions, json: bool) -> anyhow::Result<ExitCode> {
    let mut store = keys::open_store(settings)?;
    let lock = keys::lock(&store, LockKind::Prune, "prune")?;
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar =
            ProgressBar::new_spinner().with_message("pruning: reading every snapshot's trees");
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let report = store.prune(&lock, options)?;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, options.dry_run);
    }
    Ok(ExitCode::SUCCESS)
}

fn packs(p: Packs) -> String {
    format!("{} packs, {}", p.packs, HumanBytes(p.bytes))
}

fn print_report(r: &PruneReport, dry_run: bool) {
    let would = if dry_run { "would be " } else { "" };
    println!(
        "{} snapshots need {} of the {} in {} packs",
        r.snapshots,
        HumanBytes(r.used_bytes),
        HumanBytes(r.packs.bytes),
        r.packs.packs
    );
    let lines = [
        (r.marked, "marked for deletion", "no snapshot needs them"),
        (r.repacked, "repacked", "little of them is needed"),
        (
            r.adopted,
            "marked for deletion",
            "left by interrupted backups",
        ),
        (r.recovered, "recovered", "a snapshot needs them after all"),
    ];
    for (count, verb, why) in lines.into_iter().filter(|(c, ..)| c.packs > 0) {
        println!("{}: {would}{verb} ({why})", packs(count));
    }
    if r.rewritten_bytes > 0 {
        println!(
            "{} {would}copied into new packs",
            HumanBytes(r.rewritten_bytes)
        );
    }
    if r.tmp_removed.packs > 0 {
        println!(
            "{} temporary files, {} {would}removed",
            r.tmp_removed.packs,
            HumanBytes(r.tmp_removed.bytes)
        );
    }
    for (pack, what) in &r.damaged_unindexed {
        println!(
            "note: pack {pack} is in no index and damaged ({what}); `nightshift store repair` deals with it"
        );
    }
    println!("reclaimed: {} {would}deleted", packs(r.deleted));
    let waiting = r.pending.packs + r.marked.packs + r.repacked.packs + r.adopted.packs;
    if let Some(when) = r.pending_until.filter(|_| waiting > 0) {
        println!(
            "{waiting} marked packs wait for a prune after {}",
            local_time(when)
        );
    }
    if let Some(lock) = &r.deferred_by {
        println!(
            "some deletions wait for the {lock}, which is older than their mark; if that process is gone, `nightshift store unlock` (with --all when the lock is from another host)"
        );
    }
}

/// `nightshift store repair`.
pub fn repair(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let mut store = keys::open_store_unindexed(settings)?;
    let lock = keys::lock(&store, LockKind::Exclusive, "repair")?;
    let report = store.repair(&lock)?;
    drop(lock);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_repair(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_repair(r: &RepairReport) {
    for (pack, what) in &r.damaged_packs {
        println!("pack {pack}: {what}; moved to damaged/");
    }
    for name in &r.unreadable_index_files {
        println!("index file {name} was unreadable; replaced");
    }
    for name in &r.unreadable_snapshots {
        println!("snapshot file {name} was unreadable; moved to damaged/");
    }
    for (snapshot, paths) in &r.damaged_snapshots {
        println!(
            "snapshot {} is damaged: {} paths lost",
            &snapshot[..8.min(snapshot.len())],
            paths.len()
        );
        for path in paths {
            println!("  {path}");
        }
    }
    println!(
        "{} packs read, {} damaged; {} chunks salvaged, {} lost; index rebuilt",
        r.packs_read,
        r.damaged_packs.len(),
        r.chunks_salvaged,
        r.chunks_lost
    );
    if !r.damaged_snapshots.is_empty() {
        println!(
            "the damaged snapshots stay listed and restore everything else; a new backup of the same files stores what was lost again"
        );
    }
}
