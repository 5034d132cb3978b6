//! `nightshift find`: which snapshots hold a file, and which versions of it.

use crate::command::snapshots::snapshots_of;
use crate::keys;
use crate::settings::Settings;
use clap::Args;
use comfy_table::{Table, presets};
use indicatif::HumanBytes;
use nightshift_store::NodeKind;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct FindArgs {
    /// A glob: a name (nginx.conf, '*.conf') or, with a slash, a whole path ('/etc/nginx/**')
    pub pattern: String,
    /// Only this host's snapshots
    #[arg(long)]
    pub host: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `nightshift find [--host H] PATTERN`.
pub fn run(settings: &Settings, args: &FindArgs) -> anyhow::Result<ExitCode> {
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

fn modified(mtime_ns: i64) -> String {
    chrono::DateTime::from_timestamp(mtime_ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}
