//! `nightshift ls`: the files of a snapshot.

use crate::keys::{self};
use crate::settings::Settings;
use crate::show::local_time;
use anyhow::Context;
use chrono::DateTime;
use clap::Args;
use nightshift_store::{NodeKind, PackFiles};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct LsArgs {
    /// SNAPSHOT or SNAPSHOT:PATH: an id prefix, latest, web1/latest, web1@2026-11-20T03:00 (latest at or before, local time)
    pub snapshot: String,
    /// Only entries under this path
    #[arg(default_value = "/")]
    pub path: String,
    /// Mode, owner, group, size and modification time of each entry
    #[arg(long, short = 'l')]
    pub long: bool,
    /// Everything below, not only the directory's own entries
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// Print JSON, one object per entry (with every detail)
    #[arg(long)]
    pub json: bool,
}

/// `nightshift ls SNAPSHOT[:PATH]`: a directory's entries, or with
/// `--recursive` everything under it, depth first.
pub fn run(settings: &Settings, args: &LsArgs) -> anyhow::Result<ExitCode> {
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
