//! `backup = { paths, exclude, streams, tags, forget }`: an agentless pull.
//! The host's tree is listed in one stream, compared with the host's last
//! snapshot of the same paths, and only new or changed files come over, as
//! one tar stream; chunking, hashing and compression happen here, so the
//! same data from any host is stored once. Also `verify = { backup_check }`
//! and `verify = { restore_test }` on this host's latest snapshot (the
//! latter through [`crate::restore`], as any restore onto a host).

use std::time::{Duration, Instant};

use nightshift_plan::Backup;
use nightshift_store::{
    BackupOptions, LockKind, NodeKind, RemoteOptions, RestoreOptions, SnapshotEntry, Store,
};

use crate::event::BackupReport;
use crate::job::HostRun;
use crate::pull::Pull;
use crate::restore::{Commands, Request, Restore, RestoreError, What};
use crate::rollout::StoreAccess;
use crate::step::{Done, StepError};

pub async fn run(host: &HostRun<'_>, backup: &Backup, limit: Duration) -> Done {
    match pull(host, backup, Pull::new(host, limit)).await {
        Ok(done) => done,
        Err(error) => Done::fail(error),
    }
}

fn access<'a>(host: &'a HostRun<'_>) -> Result<&'a StoreAccess, StepError> {
    host.env
        .store
        .as_ref()
        .ok_or_else(|| StepError::new("store", "no backup store is configured for this run"))
}

async fn open(access: &StoreAccess) -> Result<Store, StepError> {
    let access = access.clone();
    blocking(move || Store::open(&access.root, access.passphrase.as_ref()).map_err(store_error))
        .await
}

/// Store work (synchronous, often long) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StepError::new("store", format!("the store task failed: {err}")))?
}

fn store_error(err: nightshift_store::StoreError) -> StepError {
    StepError::new("store", err.to_string())
}

async fn pull(
    host: &HostRun<'_>,
    backup: &Backup,
    remote: Pull<'_, '_>,
) -> Result<Done, StepError> {
    let started = Instant::now();
    if host.check && host.env.store.is_none() {
        return would_without_store(backup, &remote).await;
    }
    let access = access(host)?;
    let mut done = Done::default();
    let mut saved = Vec::new();
    if !backup.paths.is_empty() {
        match pull_tree(host, backup, access, &mut done, &remote).await? {
            Some(entry) => saved.push(entry),
            None => return Ok(done),
        }
    } else if host.check {
        return Ok(Done::would(format!(
            "would store {} command streams",
            backup.streams.len()
        )));
    } else {
        // Without paths, each stream is a snapshot of its own.
        for stream in &backup.streams {
            host.progress(format!("stream {}", stream.name));
            let _turn = host.env.store_turn.lock().await;
            let store = open(access).await?;
            let _lock = shared_lock(&store, "backup")?;
            let options = options(host, backup);
            let entry = remote
                .capture(store, &stream.name, &stream.command, options)
                .await?;
            done.say(format!(
                "stream {} saved as snapshot {}",
                stream.name,
                entry.short_id()
            ));
            saved.push(entry);
        }
    }
    for entry in &saved {
        record(host, entry).await;
    }
    if backup.forget {
        forget(host, access, &mut done).await?;
    }
    let files: u64 = saved.iter().map(|e| e.snapshot.summary.files).sum();
    let read: u64 = saved.iter().map(|e| e.snapshot.summary.bytes_read).sum();
    let new: u64 = saved
        .iter()
        .map(|e| e.snapshot.summary.new_bytes_stored)
        .sum();
    done.changed = true;
    done.summary = format!(
        "snapshot {}: {files} files, {read} bytes read, {new} bytes new",
        saved
            .iter()
            .map(SnapshotEntry::short_id)
            .collect::<Vec<_>>()
            .join(", ")
    );
    done.backup = saved.first().map(|entry| BackupReport {
        snapshot: entry.id.clone(),
        files,
        bytes_read: read,
        new_bytes_stored: new,
        elapsed: started.elapsed(),
    });
    Ok(done)
}

fn options(host: &HostRun<'_>, backup: &Backup) -> BackupOptions {
    let mut tags = backup.tags.clone();
    tags.push(format!("playbook:{}", host.env.playbook.name));
    if let Some(run) = host.env.run {
        tags.push(format!("run:{}", run.0));
    }
    BackupOptions {
        host: host.name().to_string(),
        tags,
        parent: None,
        threads: 0,
    }
}

/// Check mode before any store exists: the listing alone, all of it new.
async fn would_without_store(backup: &Backup, remote: &Pull<'_, '_>) -> Result<Done, StepError> {
    if backup.paths.is_empty() {
        return Ok(Done::would(format!(
            "would store {} command streams in a new store",
            backup.streams.len()
        )));
    }
    let listing = remote.list(&backup.paths, &backup.exclude, true).await?;
    Ok(Done::would(format!(
        "would back up {} entries of {}, all new (there is no store yet)",
        listing.len(),
        backup.paths.join(" ")
    )))
}

/// Lists the paths, compares them with the host's last snapshot, and
/// (unless checking) fetches what changed, with the named streams as
/// files of the same snapshot. `None` in check mode, `done` saying what
/// would happen.
async fn pull_tree(
    host: &HostRun<'_>,
    backup: &Backup,
    access: &StoreAccess,
    done: &mut Done,
    remote: &Pull<'_, '_>,
) -> Result<Option<SnapshotEntry>, StepError> {
    host.progress("listing the tree");
    let listing = remote.list(&backup.paths, &backup.exclude, false).await?;
    host.progress("waiting for the store");
    let _turn = host.env.store_turn.lock().await;
    let store = open(access).await?;
    // Held from the plan to the snapshot, as every backup holds it.
    let _lock = shared_lock(&store, "backup")?;
    let options = RemoteOptions {
        paths: backup.paths.clone(),
        streams: backup.streams.iter().map(|s| s.name.clone()).collect(),
        backup: options(host, backup),
    };
    let (store, plan) = blocking(move || {
        let mut store = store;
        let plan = store
            .plan_remote_backup(listing, &options)
            .map_err(|e| StepError::new("backup_failed", e.to_string()))?;
        Ok((store, plan))
    })
    .await?;
    let since = plan
        .parent
        .as_ref()
        .map_or("no earlier snapshot".to_string(), |p| {
            format!("since snapshot {}", p.short_id())
        });
    let what = format!(
        "{} files, {} bytes; {} files ({} bytes) new or changed {since}",
        plan.files,
        plan.bytes,
        plan.fetch.len(),
        plan.fetch_bytes
    );
    if host.check {
        *done = Done::would(format!("would back up {what}"));
        done.say(format!("backup of {}: {what}", backup.paths.join(" ")));
        return Ok(None);
    }
    done.say(format!("listed {what}"));
    host.progress(format!("fetching {} changed files", plan.fetch.len()));
    let outcome = remote.fetch(store, plan, &backup.streams, done).await?;
    for skipped in &outcome.skipped {
        done.say(format!("skipped {}: {}", skipped.path, skipped.error));
    }
    let entry = outcome.snapshot;
    done.say(format!("snapshot {} saved", entry.short_id()));
    Ok(Some(entry))
}

/// The shared lock every backup, check and forget holds.
fn shared_lock(store: &Store, command: &str) -> Result<nightshift_store::Lock, StepError> {
    store.lock(LockKind::Shared, command).map_err(store_error)
}

async fn record(host: &HostRun<'_>, entry: &SnapshotEntry) {
    let row = crate::snapshot_row(entry, host.job, None);
    host.env
        .record("the snapshot", |c| c.record_snapshot(&row))
        .await;
}

/// Applies the host's retention policy from the inventory.
async fn forget(
    host: &HostRun<'_>,
    access: &StoreAccess,
    done: &mut Done,
) -> Result<(), StepError> {
    let Some(policy) = host.target.retention.clone() else {
        done.say("forget = true, but the inventory has no retention policy for this host: kept everything");
        return Ok(());
    };
    let store = open(access).await?;
    let _lock = shared_lock(&store, "forget")?;
    let name = host.name().to_string();
    let forgotten = blocking(move || {
        let snapshots: Vec<SnapshotEntry> = store
            .snapshots()
            .map_err(store_error)?
            .into_iter()
            .filter(|s| s.snapshot.host == name)
            .collect();
        let decisions = nightshift_store::decide(&snapshots, &policy, &chrono::Local);
        let gone: Vec<String> = decisions
            .iter()
            .filter(|d| !d.keep())
            .map(|d| d.snapshot.id.clone())
            .collect();
        store.forget(&gone).map_err(store_error)?;
        Ok(gone.len())
    })
    .await?;
    done.say(format!(
        "forgot {forgotten} snapshots by the host's retention policy"
    ));
    Ok(())
}

/// `verify = { backup_check = true }`: reads back a sample of this host's
/// latest snapshot, every chunk checked against its hash.
pub async fn check(host: &HostRun<'_>) -> Done {
    if host.check && host.env.store.is_none() {
        return Done::would("would read back the latest snapshot (there is no store yet)");
    }
    let result = async {
        let access = access(host)?;
        let store = open(access).await?;
        let _lock = shared_lock(&store, "check")?;
        let name = host.name().to_string();
        blocking(move || sample_read(&store, &name)).await
    }
    .await;
    match result {
        Ok(sample) => Done::ok(format!(
            "snapshot {}: {} files, {} bytes read back and verified",
            &sample.snapshot[..8.min(sample.snapshot.len())],
            sample.files,
            sample.bytes
        )),
        Err(error) => Done::fail(error),
    }
}

/// A sample of a snapshot's files, read back.
struct Sample {
    snapshot: String,
    files: usize,
    bytes: u64,
}

const SAMPLE_FILES: usize = 32;
const SAMPLE_BYTES: u64 = 64 << 20;

/// Files of a snapshot, each by its full path without the leading `/`.
type Picked = Vec<(Vec<u8>, nightshift_store::Node)>;

/// The latest snapshot of `host` with a tree, and up to 32 of its files
/// (64 MiB) spread over it.
fn sample_files(store: &Store, host: &str) -> Result<(SnapshotEntry, Picked), StepError> {
    let err = |e: nightshift_store::StoreError| StepError::new("verify_failed", e.to_string());
    let latest = store
        .snapshots()
        .map_err(err)?
        .into_iter()
        .filter(|s| {
            s.snapshot.host == host && s.snapshot.paths.iter().any(|p| !p.starts_with("stream:"))
        })
        .max_by_key(|s| s.snapshot.time)
        .ok_or_else(|| {
            StepError::new(
                "verify_failed",
                format!("{host} has no snapshot to verify; run a backup first"),
            )
        })?;
    let mut packs = nightshift_store::PackFiles::default();
    let mut files = Vec::new();
    let mut stack = vec![(Vec::new(), latest.snapshot.tree)];
    while let Some((prefix, tree)) = stack.pop() {
        for node in store.load_tree(tree, &mut packs).map_err(err)?.nodes {
            let mut path: Vec<u8> = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name);
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(subtree)) => stack.push((path, subtree)),
                (NodeKind::File, _) => files.push((path, node)),
                _ => {}
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let step = files.len().div_ceil(SAMPLE_FILES).max(1);
    let mut bytes = 0;
    let sample = files
        .into_iter()
        .step_by(step)
        // read only what the budget allows, however big a file
        .filter(|(_, node)| {
            let fits = bytes + node.size <= SAMPLE_BYTES;
            if fits {
                bytes += node.size;
            }
            fits
        })
        .collect();
    Ok((latest, sample))
}

/// Reads a sample of the latest snapshot of `host`, verifying each chunk.
fn sample_read(store: &Store, host: &str) -> Result<Sample, StepError> {
    let err = |e: nightshift_store::StoreError| StepError::new("verify_failed", e.to_string());
    let (latest, files) = sample_files(store, host)?;
    let mut packs = nightshift_store::PackFiles::default();
    let mut sample = Sample {
        snapshot: latest.id.clone(),
        files: files.len(),
        bytes: 0,
    };
    for (_, node) in &files {
        for chunk in &node.content {
            sample.bytes += store.read_chunk(*chunk, &mut packs).map_err(err)?.len() as u64;
        }
    }
    Ok(sample)
}

/// `verify = { restore_test = true }`: restores a sample of the latest
/// snapshot into a private directory under `/tmp` on the host, hashes what
/// landed there, compares, and removes the directory.
pub async fn restore_test(host: &HostRun<'_>, limit: Duration) -> Done {
    if host.check {
        return Done::would(
            "would restore a sample of the latest snapshot on the host and compare",
        );
    }
    match restore_sample(host, limit).await {
        Ok(done) => done,
        Err(error) => Done::fail(error),
    }
}

async fn restore_sample(host: &HostRun<'_>, limit: Duration) -> Result<Done, StepError> {
    let access = access(host)?;
    let store = open(access).await?;
    let lock = shared_lock(&store, "restore")?;
    let name = host.name().to_string();
    let (store, latest, files) = blocking(move || {
        let (latest, files) = sample_files(&store, &name)?;
        Ok((store, latest, files))
    })
    .await?;
    let request = Request {
        store: std::sync::Arc::new(store),
        snapshot: latest,
        what: What::Files(files.into_iter().map(|(path, _)| path).collect()),
        dir: "/tmp".into(),
        // Only the contents are compared: nothing is kept as recorded.
        options: RestoreOptions::default(),
        overwrite: false,
        commands: Commands {
            become_root: host.env.playbook.become_root,
            limit: (limit != Duration::MAX).then_some(limit),
            cancel: host.stop.token(),
        },
    };
    let restore = Restore {
        host: host.conn()?,
        name: host.name(),
        request: &request,
        progress: &nightshift_store::Progress::default(),
    };
    let landed = restore.verify_only().await;
    drop(lock);
    let landed = landed.map_err(|err| match err {
        RestoreError::Transport(err) => StepError::from(err),
        err => StepError::new("verify_failed", err.to_string()),
    })?;
    let short = &request.snapshot.id[..8.min(request.snapshot.id.len())];
    let mut done = Done::default();
    done.say(format!(
        "restored {} files ({} bytes) of snapshot {short} into {}",
        landed.files, landed.bytes, landed.staged
    ));
    for (path, why) in &landed.failed {
        done.say(format!("not restored: {path}: {why}"));
    }
    if landed.ok() {
        done.summary = format!(
            "{} files, {} bytes restored on the host, all verified (SHA-256 on the host)",
            landed.files, landed.bytes
        );
        return Ok(done);
    }
    let mut wrong = landed.differ;
    wrong.extend(landed.failed.into_iter().map(|(path, _)| path));
    done.say(format!("differ: {}", wrong.join(", ")));
    done.failing(StepError::new(
        "verify_failed",
        format!(
            "{} of {} restored files differ from the snapshot",
            wrong.len(),
            landed.files,
        ),
    ));
    done.listed = wrong;
    Ok(done)
}
