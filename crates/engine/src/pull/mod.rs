//! The agentless pull protocol: a host that offers nothing but a shell, GNU
//! find and GNU tar is backed up incrementally through two command streams.
//! This module owns the commands, runs them within the step's deadline, and
//! bridges their output to the store, which plans from a listing and
//! ingests a tar stream without knowing where either came from.
//!
//! 1. [`listing_command`] lists the paths in one stream, one record per
//!    entry with everything a tree needs: type, mode, owner, size, mtime,
//!    ctime, inode, device, link count and symlink target. [`read_listing`]
//!    hands each record to the store's [`Listing`] as it arrives; the
//!    listing's text is never held whole.
//! 2. The store compares the listing with the host's previous snapshot
//!    ([`Store::plan_remote_backup`]) and says what to fetch.
//! 3. [`fetch_list`] goes to a file on the host, [`tar_command`] reads it,
//!    and its tar, then each named stream's output, flows into
//!    [`Store::backup_remote`], which writes the snapshot.
//!
//! Run through a local shell, the same commands back up `localhost`.
//!
//! # What the host needs
//!
//! A POSIX `sh`, GNU findutils 4.5 or later (`-printf` with `%T@` and `\0`,
//! `-readable`, `-executable`, `-xdev`) and GNU tar 1.29 or later
//! (`--verbatim-files-from`); Debian 9 and later ship both. BusyBox find and
//! tar lack these options and fail with an error rather than a wrong listing.
//!
//! # What the listing covers
//!
//! Each path with everything below it on the same file system (`-xdev`): a
//! file system mounted below a path is listed as its empty mount point, so
//! `/proc`, network mounts and bind mounts are never walked by accident;
//! name each further file system as a path of its own. Symlinks are not
//! followed, except in the directories leading to a path (`/srv` a symlink
//! to `/data/srv`, path `/srv/www`: `srv` is recorded as the directory it
//! points to). A directory find may not read or search is recorded, empty,
//! and reported as skipped, as a local backup does.
//!
//! # Exit statuses
//!
//! find exits 1 when an entry vanished during the walk or could not be
//! read (its error output names them): the listing is still sound. tar,
//! made to ignore files it cannot read, exits 1 when a file changed while
//! it read it (the snapshot holds what it read, and a file that shrank
//! meanwhile is padded with zeros by GNU tar: its stream cannot show it, so
//! that exit status is reported), and 2 or more on a fatal error. A named
//! stream whose command fails fails its pipe at its end, so the store
//! writes no snapshot.
//!
//! # The bridge
//!
//! The transport is async, the store synchronous: the store works on a
//! blocking thread and reads each command's output from a bounded channel
//! (`bridge`) that the step's task fills, stopping at the deadline or the
//! run's cancellation. Nothing blocks a runtime worker.

pub(crate) mod bridge;
mod command;
mod listing;

use std::time::Duration;

use nightshift_plan::Stream;
use nightshift_store::{
    BackupOptions, BackupOutcome, Listing, Progress, RemotePlan, SnapshotEntry, Store, StreamSource,
};
use nightshift_transport::{Command, ExitStatus, Output, Reading, TransportError, shell_quote};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

pub(crate) use bridge::Deadline;
use bridge::{Feed, Pumped, drain, pipe};
pub use command::{fetch_list, listing_command, tar_command};
pub use listing::read_listing;

use crate::action;
use crate::job::HostRun;
use crate::step::{Done, StepError};

/// The longest a listing or the upload of a fetch list may take.
const LIST_LIMIT: Duration = Duration::from_secs(3600);

/// A pull from one host, within one step's deadline.
pub(crate) struct Pull<'h, 'a> {
    host: &'h HostRun<'a>,
    deadline: Deadline,
}

impl<'h, 'a> Pull<'h, 'a> {
    pub(crate) fn new(host: &'h HostRun<'a>, limit: Duration) -> Self {
        Self {
            host,
            deadline: Deadline::new(limit, host.stop.token()),
        }
    }

    fn command(&self, line: impl Into<String>, limit: Duration) -> Command {
        action::command(self.host, line, limit)
    }

    /// Lists `paths` on the host, each record into the listing as it
    /// arrives. find's exit status 1 (an entry could not be read) leaves a
    /// sound listing; a worse one fails unless `any_status`.
    pub(crate) async fn list(
        &self,
        paths: &[String],
        exclude: &[String],
        any_status: bool,
    ) -> Result<Listing, StepError> {
        let line = listing_command(paths, exclude)
            .map_err(|e| StepError::new("invalid", e.to_string()))?;
        let command = self.command(line, LIST_LIMIT);
        let mut reading = self.host.conn()?.read_stream(&command).await?;
        let (feed, pipe) = pipe();
        let parsed = tokio::task::spawn_blocking(move || read_listing(pipe));
        let pumped = feed
            .pump(&mut reading, &command.shown(), &self.deadline)
            .await;
        drop(feed);
        if let Pumped::HungUp = pumped {
            // The parser refused a record: its error says which.
            drain(&mut reading, &command.shown(), &self.deadline).await;
        }
        if let Pumped::Failed(err) = pumped {
            return Err(StepError::new(
                "connection_lost",
                format!("reading the output of `{}` failed: {err}", command.line),
            ));
        }
        let out = reading.finish().await?;
        // find exits 1 when some entry could not be read; the rest is listed.
        if !any_status && !matches!(out.status, ExitStatus::Code(0 | 1)) {
            return Err(StepError::new(
                "backup_failed",
                format!(
                    "listing {} failed ({}): {}",
                    paths.join(" "),
                    out.status,
                    out.stderr.text().trim()
                ),
            ));
        }
        parsed
            .await
            .map_err(store_task)?
            .map_err(|e| StepError::new("backup_failed", e.to_string()))
    }

    /// Writes the plan's fetch list to the host, streams the files back
    /// as one tar, then each named stream, and stores them as one snapshot.
    /// What tar said goes into `done`.
    pub(crate) async fn fetch(
        &self,
        store: Store,
        plan: RemotePlan,
        streams: &[Stream],
        done: &mut Done,
    ) -> Result<BackupOutcome, StepError> {
        let conn = self.host.conn()?;
        let list_file = match plan.fetch.is_empty() {
            true => None,
            false => Some(self.send_list(&plan).await?),
        };
        let tar = match &list_file {
            Some(file) => match conn
                .read_stream(&self.command(tar_command(file), Duration::MAX))
                .await
            {
                Ok(reading) => Some(reading),
                Err(err) => {
                    self.remove(file).await;
                    return Err(err.into());
                }
            },
            None => None,
        };
        let (tar_feed, tar_pipe) = pipe();
        let mut sources = Vec::new();
        let mut feeds = Vec::new();
        for stream in streams {
            let (feed, pipe) = pipe();
            let (wanted, asked) = oneshot::channel();
            sources.push(StreamSource {
                name: stream.name.clone(),
                open: Box::new(move || {
                    let _ = wanted.send(());
                    Ok(Box::new(pipe) as Box<dyn std::io::Read>)
                }),
            });
            feeds.push((asked, feed, stream.command.as_str()));
        }
        let mut store = store;
        let stored = tokio::task::spawn_blocking(move || {
            store.backup_remote(plan, tar_pipe, sources, &Progress::default())
        });
        let host_side = async {
            let tar_out = match tar {
                Some(reading) => Some(self.feed_tar(reading, tar_feed).await),
                None => {
                    drop(tar_feed); // nothing to fetch: the tar is empty
                    None
                }
            };
            // Each stream once the store asks for it: one channel of the
            // host's connection is read at a time.
            for (asked, feed, line) in feeds {
                if asked.await.is_err() {
                    break; // the store stopped before it
                }
                self.feed_stream(line, feed).await;
            }
            tar_out
        };
        let (stored, tar_out) = tokio::join!(stored, host_side);
        if let Some(file) = &list_file {
            self.remove(file).await;
        }
        // Once the store wrote the snapshot, the snapshot stands, whatever
        // the channel said after; when it did not, a channel that broke is
        // the cause (a host cut off mid-stream), not the short stream it left.
        match (stored.map_err(store_task)?, tar_out) {
            (Ok(outcome), tar_out) => {
                report_tar(done, tar_out);
                Ok(outcome)
            }
            (Err(_), Some(Err(lost))) => Err(lost.into()),
            (Err(err), _) => Err(StepError::new("backup_failed", err.to_string())),
        }
    }

    /// Stores a command's output as a named stream, a snapshot of its own.
    /// A command that fails (or a connection lost mid-dump) fails the
    /// stream before the snapshot is written.
    pub(crate) async fn capture(
        &self,
        store: Store,
        name: &str,
        line: &str,
        options: BackupOptions,
    ) -> Result<SnapshotEntry, StepError> {
        let (feed, pipe) = pipe();
        let name = name.to_string();
        let mut store = store;
        let stored = tokio::task::spawn_blocking(move || {
            store.backup_stream(&name, pipe, &options, &Progress::default())
        });
        let (stored, ()) = tokio::join!(stored, self.feed_stream(line, feed));
        stored
            .map_err(store_task)?
            .map(|outcome| outcome.snapshot)
            .map_err(|e| StepError::new("backup_failed", e.to_string()))
    }

    /// Pumps the tar into its pipe; returns how tar ended. Its status is
    /// not the store's concern: a short or foreign tar is refused there.
    async fn feed_tar(&self, mut reading: Reading, feed: Feed) -> Result<Output, TransportError> {
        if !matches!(
            feed.pump(&mut reading, "tar", &self.deadline).await,
            Pumped::Ended
        ) {
            // So the channel ends cleanly.
            drain(&mut reading, "tar", &self.deadline).await;
        }
        drop(feed);
        reading.finish().await
    }

    /// Runs a stream's command (no limit but the step's) and pumps its
    /// output into `feed`; a command that fails fails the pipe at its end,
    /// so a dump that broke off half-way is never stored as if whole.
    async fn feed_stream(&self, line: &str, feed: Feed) {
        let command = self.command(line, Duration::MAX);
        let mut reading = match self.host.conn() {
            Ok(conn) => match conn.read_stream(&command).await {
                Ok(reading) => reading,
                Err(err) => return feed.fail(std::io::Error::other(err)).await,
            },
            Err(err) => return feed.fail(std::io::Error::other(err.message)).await,
        };
        let shown = command.shown();
        match feed.pump(&mut reading, &shown, &self.deadline).await {
            Pumped::Ended => match reading.finish().await {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    let failed = format!(
                        "`{shown}` failed ({}): {}",
                        out.status,
                        out.stderr.text().trim()
                    );
                    feed.fail(std::io::Error::other(failed)).await;
                }
                Err(err) => feed.fail(std::io::Error::other(err)).await,
            },
            Pumped::HungUp => {
                drain(&mut reading, &shown, &self.deadline).await;
                let _ = reading.finish().await;
            }
            // The pipe has the error; the command is left to its own end.
            Pumped::Failed(_) => {}
        }
    }

    /// Writes the NUL-separated fetch list into a temporary file on the
    /// host; returns its path.
    async fn send_list(&self, plan: &RemotePlan) -> Result<String, StepError> {
        let conn = self.host.conn()?;
        let mktemp = self.command(
            "mktemp /tmp/nightshift-fetch.XXXXXXXX",
            Duration::from_secs(60),
        );
        let out = action::exec(self.host, &mktemp).await?;
        let list_file = out.stdout.text().trim().to_string();
        if !out.status.success() || list_file.is_empty() {
            return Err(StepError::new(
                "backup_failed",
                format!(
                    "cannot make a temporary file on the host: {}",
                    out.stderr.text().trim()
                ),
            ));
        }
        let write = self.command(format!("cat > {}", shell_quote(&list_file)), LIST_LIMIT);
        let written = async {
            let mut writing = conn.write_stream(&write).await?;
            let sent = writing.write_all(&fetch_list(plan)).await;
            let out = writing.finish().await?;
            if sent.is_err() || !out.status.success() {
                return Err(StepError::new(
                    "backup_failed",
                    format!(
                        "cannot write the file list to the host: {}",
                        out.stderr.text().trim()
                    ),
                ));
            }
            Ok(())
        }
        .await;
        if let Err(err) = written {
            self.remove(&list_file).await;
            return Err(err);
        }
        Ok(list_file)
    }

    /// Removes a temporary file of ours on the host, as well as it can.
    async fn remove(&self, file: &str) {
        let line = format!("rm -f {}", shell_quote(file));
        let cleanup = self.command(line, Duration::from_secs(60));
        if let Err(err) = action::exec(self.host, &cleanup).await {
            tracing::warn!(host = self.host.name(), file, error = %err.message, "cannot remove a temporary file on the host");
        }
    }
}

/// What the tar said, into the step's output.
fn report_tar(done: &mut Done, tar_out: Option<Result<Output, TransportError>>) {
    match tar_out {
        // tar exits 1 when a file changed while it was read: the snapshot
        // holds what it sent, and the store lists what it could not use.
        Some(Ok(out)) if !matches!(out.status, ExitStatus::Code(0 | 1)) => {
            done.say(format!(
                "tar reported errors ({}): {}",
                out.status,
                out.stderr.text().trim()
            ));
        }
        Some(Err(err)) => done.say(format!(
            "the tar channel ended badly after the snapshot was written: {err}"
        )),
        _ => {}
    }
}

fn store_task(err: tokio::task::JoinError) -> StepError {
    StepError::new("store", format!("the store task failed: {err}"))
}
