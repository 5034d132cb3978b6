//! `nightshift store prune`: what it marked, repacked and deleted, said in
//! bytes a sysadmin can weigh, and when the marked space comes back.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar};
use nightshift_store::{LockKind, Packs, PruneOptions, PruneReport};

use crate::keys;
use crate::settings::Settings;
use crate::store::local_time;

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
            "some deletions wait for the {lock}, which is older than their mark; if that process is gone, `nightshift store unlock`"
        );
    }
}
