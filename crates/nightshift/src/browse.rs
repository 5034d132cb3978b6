//! `nightshift find` and `nightshift diff`: the technician's way to the
//! right snapshot — every version of a file across snapshots, and what
//! changed between two of them.

use std::process::ExitCode;

use comfy_table::{Table, presets};
use indicatif::HumanBytes;
use nightshift_store::{Change, NodeKind, split_path};

use crate::cli::{DiffArgs, FindArgs};
use crate::keys;
use crate::settings::Settings;
use crate::store::snapshots_of;

/// `nightshift find [--host H] PATTERN`.
pub fn find(settings: &Settings, args: &FindArgs) -> anyhow::Result<ExitCode> {
    let pattern = glob::Pattern::new(&args.pattern).map_err(|err| {
        anyhow::anyhow!(
            "`{}` is not a pattern ({err}); write a name like nginx.conf or '*.conf', or a path like '/etc/nginx/**'",
            args.pattern
        )
    })?;
    let by_name = !args.pattern.contains('/');
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::default()
    };
    let wanted = |path: &str, name: &[u8]| {
        if by_name {
            pattern.matches_with(&String::from_utf8_lossy(name), options)
        } else {
            pattern.matches_with(path, options)
        }
    };
    let store = keys::open_store(settings)?;
    let snapshots = snapshots_of(&store, args.host.as_deref())?;
    let versions = store.find(&snapshots, &wanted, by_name)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if versions.is_empty() {
        eprintln!(
            "nothing matches `{}` in {} snapshots",
            args.pattern,
            snapshots.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let short = |id: &str| id.chars().take(8).collect::<String>();
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["PATH", "SIZE", "MODIFIED", "IN SNAPSHOTS"]);
    for v in &versions {
        let held = match v.snapshots.as_slice() {
            [one] => short(one),
            [first, .., last] => {
                format!("{} … {} ({})", short(first), short(last), v.snapshots.len())
            }
            [] => String::new(),
        };
        let size = if v.kind == NodeKind::File {
            HumanBytes(v.size).to_string()
        } else {
            format!("{:?}", v.kind).to_lowercase()
        };
        table.add_row([v.path.clone(), size, modified(v.mtime_ns), held]);
    }
    println!("{table}");
    println!(
        "{} versions of {} paths in {} snapshots · nightshift restore SNAPSHOT:PATH --to DIR",
        versions.len(),
        {
            let mut paths: Vec<&str> = versions.iter().map(|v| v.path.as_str()).collect();
            paths.dedup();
            paths.len()
        },
        snapshots.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `nightshift diff A B [PATH]`.
pub fn diff(settings: &Settings, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let store = keys::open_store(settings)?;
    let (a_spec, a_path) = split_path(&args.a);
    let path = if args.a.contains(":/") {
        a_path
    } else {
        args.path.as_str()
    };
    let a = store.find_snapshot(a_spec)?;
    let b = store.find_snapshot(split_path(&args.b).0)?;
    let differences = store.diff(&a, &b, path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&differences)?);
        return Ok(ExitCode::SUCCESS);
    }
    for d in &differences {
        let size = |s: Option<u64>| s.map_or("—".into(), |s| HumanBytes(s).to_string());
        let line = match d.change {
            Change::Added => format!("+ {} ({})", d.path, size(d.new_size)),
            Change::Removed => format!("- {} ({})", d.path, size(d.old_size)),
            Change::Changed => {
                format!("M {} ({} → {})", d.path, size(d.old_size), size(d.new_size))
            }
        };
        println!("{line}");
    }
    let count = |c: Change| differences.iter().filter(|d| d.change == c).count();
    println!(
        "{} added, {} removed, {} changed · {} ({}) → {} ({})",
        count(Change::Added),
        count(Change::Removed),
        count(Change::Changed),
        a.short_id(),
        a.snapshot.time.format("%Y-%m-%d %H:%M UTC"),
        b.short_id(),
        b.snapshot.time.format("%Y-%m-%d %H:%M UTC")
    );
    Ok(ExitCode::SUCCESS)
}

fn modified(mtime_ns: i64) -> String {
    chrono::DateTime::from_timestamp(mtime_ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}
