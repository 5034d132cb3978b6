//! `nightshift restore SNAPSHOT[:PATH] --to HOST:DIR` and `--in-place`:
//! a restore onto a fleet host over SSH, done by the engine's
//! [`nightshift_engine::restore`] (staged, hashed on the host, then renamed
//! into place); here are its arguments, the question before an in-place
//! restore, the progress bar, the refusal of what is in the way, and what
//! is recorded and told.

mod outcome;

use super::RestoreArgs;
use crate::keys;
use crate::settings::Settings;
use crate::show::with_progress;
use nightshift_engine::reach::{connect, reach};
use nightshift_engine::restore::{Commands, Request, Restore, What};
pub(crate) use nightshift_engine::restore::{Entry, Landed, listing};
use nightshift_store::{LockKind, Progress, RestoreOptions, SnapshotEntry};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use outcome::report;
pub(crate) use outcome::{Existing, record};

/// Where a restore goes on a host.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub host: String,
    pub dir: String,
}

/// `--to HOST:DIR` (HOST an inventory name, DIR absolute), or `None` for
/// a local directory.
pub fn destination(to: &str) -> anyhow::Result<Option<Destination>> {
    let Some((host, dir)) = to.split_once(':') else {
        return Ok(None);
    };
    if host.is_empty() || host.contains('/') {
        return Ok(None);
    }
    anyhow::ensure!(
        dir.starts_with('/'),
        "--to {to}: the directory on {host} must be absolute, like {host}:/tmp/restore"
    );
    Ok(Some(Destination {
        host: host.to_string(),
        dir: dir.to_string(),
    }))
}

pub fn remote(
    settings: &Settings,
    args: &RestoreArgs,
    spec: &str,
    path: &str,
    target: Option<Destination>,
) -> anyhow::Result<ExitCode> {
    let inventory = settings.plan()?.inventory;
    let store = keys::open_store(settings)?;
    let _lock = keys::lock(&store, LockKind::Shared, "restore")?;
    let snapshot = store.find_snapshot(spec)?;
    let target = match target {
        Some(target) => target,
        None => in_place(&snapshot, path, args)?,
    };
    // Owners, setuid/setgid bits and special files as recorded only back on
    // the snapshot's own host, unless asked for.
    let options = RestoreOptions {
        keep_privileges: args.keep_privileges || target.host == snapshot.snapshot.host,
    };
    let entries = listing(&store, &snapshot, path, options)?;
    let progress = Progress::default();
    progress.bytes_total.store(
        entries.iter().filter(|e| e.file).map(|e| e.size).sum(),
        Ordering::Relaxed,
    );
    let reach = reach(&inventory, &target.host)?;
    let ssh = crate::settings::ssh_config(settings, &inventory)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let operator = args.operator.clone().unwrap_or_else(crate::operator);
    let request = Request {
        store: std::sync::Arc::new(store),
        snapshot: snapshot.clone(),
        what: What::Path(path.to_string()),
        dir: target.dir.clone(),
        options,
        overwrite: args.overwrite,
        commands: Commands {
            become_root: args.become_root,
            ..Commands::default()
        },
    };
    let outcome = with_progress(&progress, "restoring", || {
        runtime.block_on(async {
            let host = connect(&reach, &ssh).await?;
            let restore = Restore {
                host: &host,
                name: &target.host,
                request: &request,
                progress: &progress,
            };
            let result = run(&restore, &entries, &snapshot, &target, args).await;
            host.close().await;
            result
        })
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => {
            let err = err.context(format!(
                "restoring to {}:{} failed",
                target.host, target.dir
            ));
            if !args.dry_run {
                record(
                    settings,
                    &snapshot,
                    path,
                    &target,
                    &operator,
                    &Landed::default(),
                    Some(&err),
                );
            }
            return Err(err);
        }
    };
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    record(
        settings, &snapshot, path, &target, &operator, &outcome, None,
    );
    report(
        &snapshot,
        path,
        &target,
        &outcome,
        args.json,
        options.keep_privileges,
    )?;
    Ok(if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Looks at the target, refuses (or, with `--dry-run`, tells) what is in
/// the way, and restores.
async fn run(
    restore: &Restore<'_>,
    entries: &[Entry],
    snapshot: &SnapshotEntry,
    target: &Destination,
    args: &RestoreArgs,
) -> anyhow::Result<Landed> {
    let looked = restore.look(entries).await?;
    let existing = Existing::from_answer(&looked, entries);
    let shown = format!("{}:{}", target.host, target.dir);
    if existing.gate(entries, snapshot, &shown, args)? {
        return Ok(Landed::default());
    }
    Ok(restore.place(entries, &looked).await?)
}

/// `--in-place`: back where it came from, after a yes.
fn in_place(
    snapshot: &SnapshotEntry,
    path: &str,
    args: &RestoreArgs,
) -> anyhow::Result<Destination> {
    let parent = std::path::Path::new(path)
        .parent()
        .map_or("/".to_string(), |p| p.display().to_string());
    let target = Destination {
        host: snapshot.snapshot.host.clone(),
        dir: if path == "/" { "/".into() } else { parent },
    };
    if args.yes || args.dry_run {
        return Ok(target);
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "--in-place replaces files on {}; confirm with --yes when running from a script",
        target.host
    );
    eprint!(
        "restore {path} of snapshot {} over {}:{} in place, replacing what is there? [y/N] ",
        snapshot.short_id(),
        target.host,
        target.dir
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    anyhow::ensure!(
        matches!(answer.trim(), "y" | "Y" | "yes"),
        "nothing restored"
    );
    Ok(target)
}
