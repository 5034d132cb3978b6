//! Restoring onto a host and proving it: the one way nightshift puts a
//! snapshot's files on a host, for `nightshift restore --to HOST:DIR` and
//! `--in-place` as for a playbook's `verify = { restore_test = true }`.
//!
//! The store writes its tar stream (every regular file's SHA-256 taken as
//! it passes) on a blocking thread into the engine's bridge; `tar -x` on the
//! host unpacks it into a new private staging directory (mode 0700) inside
//! the target; the host hashes what landed there (see [`verify`]) and the
//! hashes are compared with the stream's. Then the entries are renamed into
//! place without following a link (see [`place`]), or, for a restore test,
//! the staging directory is removed. Nothing here prints or asks: the front
//! end looks at what is in the way ([`Restore::look`]), decides, and tells.

mod place;
mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nightshift_store::{
    Dropped, NodeKind, PackFiles, Progress, RestoreOptions, SnapshotEntry, Store, StoreError,
};
use nightshift_transport::{Command, Host, TransportError, shell_quote};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::pull::bridge::{self, Deadline};
use place::Pass;
pub use place::{Answer, Entry};

/// What of a snapshot a restore writes.
#[derive(Debug, Clone)]
pub enum What {
    /// A path in the snapshot (`/` for all of it); a sub-path lands under
    /// its own name.
    Path(String),
    /// These regular files (full paths without the leading `/`, raw bytes)
    /// with the directories holding them: a restore test's sample.
    Files(BTreeSet<Vec<u8>>),
}

/// How the commands of a restore run on the host.
#[derive(Debug, Clone, Default)]
pub struct Commands {
    /// Through `sudo -n`.
    pub become_root: bool,
    /// Each command stopped after this long; `None` for no limit.
    pub limit: Option<Duration>,
    /// Stops the restore's commands when cancelled.
    pub cancel: CancellationToken,
}

impl Commands {
    fn command(&self, line: String) -> Command {
        let command = Command::new(line)
            .become_root(self.become_root)
            .cancel_on(self.cancel.clone());
        match self.limit {
            Some(limit) => command.timeout(limit),
            None => command,
        }
    }
}

/// One restore onto a host: what, where, and how.
#[derive(Clone)]
pub struct Request {
    pub store: Arc<Store>,
    pub snapshot: SnapshotEntry,
    pub what: What,
    /// The target directory on the host, absolute.
    pub dir: String,
    pub options: RestoreOptions,
    /// Replace files in the way (refused otherwise, at the look).
    pub overwrite: bool,
    pub commands: Commands,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("snapshot", &self.snapshot.id)
            .field("what", &self.what)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why a restore onto a host failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("unpacking on {host} failed ({status}): {said}")]
    Unpack {
        host: String,
        status: String,
        said: String,
    },
    #[error("the stream to the host broke: {0}")]
    Stream(std::io::Error),
    #[error("the restore's tar writer died: {0}")]
    Writer(String),
    #[error("hashing what landed failed: {0}")]
    Hashing(String),
    #[error("cannot {doing} {host}:{dir}: {said}")]
    Place {
        doing: &'static str,
        host: String,
        dir: String,
        said: String,
    },
}

/// What a restore did at its target.
#[derive(Debug, Default)]
pub struct Landed {
    pub files: u64,
    pub bytes: u64,
    /// Entries the store could not give (damaged or escaping), or that
    /// were not put in place, with the reason.
    pub failed: Vec<(String, String)>,
    /// Files whose SHA-256 on the host is the stream's.
    pub verified: u64,
    /// Files whose hash on the host differs, or that are missing there.
    pub differ: Vec<String>,
    /// What was not restored as the snapshot recorded it.
    pub dropped: Dropped,
    /// Where the files were staged on the host.
    pub staged: String,
}

impl Landed {
    /// A restore on this machine: every chunk was checked against its
    /// BLAKE3 id as it was read, so what was written is what was stored.
    pub fn local(outcome: nightshift_store::RestoreOutcome) -> Self {
        Self {
            verified: outcome.files,
            files: outcome.files,
            bytes: outcome.bytes,
            failed: outcome.failed,
            ..Self::default()
        }
    }

    /// Everything landed and verified.
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.differ.is_empty()
    }
}

/// A restore of `request` onto `host`, its bytes counted in `progress`.
#[allow(missing_debug_implementations)] // a borrowed connection and a request
pub struct Restore<'a> {
    pub host: &'a Host,
    /// The host's name, for messages.
    pub name: &'a str,
    pub request: &'a Request,
    pub progress: &'a Progress,
}

impl Restore<'_> {
    /// What is in the way at the target of `entries` (from [`listing`]),
    /// changing nothing; also how many CPUs the host has.
    pub async fn look(&self, entries: &[Entry]) -> Result<Answer, RestoreError> {
        self.run_place(entries, "", Pass::Check).await
    }

    /// Unpacks into a staging directory, verifies what landed there, and
    /// renames `entries` into place; `looked` is what [`Restore::look`]
    /// said. A failure leaves nothing staged.
    pub async fn place(&self, entries: &[Entry], looked: &Answer) -> Result<Landed, RestoreError> {
        let staging = staging_name();
        let result = async {
            let mut landed = self.stage_and_verify(&staging, looked.cpus).await?;
            let moved = self.run_place(entries, &staging, Pass::Move).await?;
            for (index, why) in moved.not_placed {
                let entry = &entries[index];
                if entry.file && landed.verified > 0 {
                    landed.verified -= 1;
                }
                landed.failed.push((entry.path.clone(), why.to_string()));
            }
            Ok(landed)
        }
        .await;
        if result.is_err() {
            self.discard(&staging).await;
        }
        result
    }

    /// Unpacks into a staging directory, verifies what landed there, and
    /// removes it again: a restore test.
    pub async fn verify_only(&self) -> Result<Landed, RestoreError> {
        let staging = staging_name();
        let result = self.stage_and_verify(&staging, 1).await;
        self.discard(&staging).await;
        result
    }

    async fn stage_and_verify(&self, staging: &str, cpus: usize) -> Result<Landed, RestoreError> {
        let mut unpacked = self.unpack(staging).await?;
        let staged = format!("{}/{staging}", self.request.dir.trim_end_matches('/'));
        let commands = &self.request.commands;
        let found = verify::hashes(self.host, &staged, commands, cpus).await?;
        let mut landed = unpacked.landed;
        for (file, digest) in std::mem::take(&mut unpacked.digests) {
            match found.get(&file) {
                Some(there) if *there == digest => landed.verified += 1,
                _ => landed
                    .differ
                    .push(String::from_utf8_lossy(&file).into_owned()),
            }
        }
        landed.staged = staged;
        Ok(landed)
    }

    /// Runs the placing script for `pass` (see [`place`]).
    async fn run_place(
        &self,
        entries: &[Entry],
        staging: &str,
        pass: Pass,
    ) -> Result<Answer, RestoreError> {
        let request = self.request;
        let script = place::script(entries, &request.dir, staging, pass, request.overwrite);
        let command = request.commands.command("sh -s".into());
        let mut writing = self.host.write_stream(&command).await?;
        // The script may end before reading all of itself (a target not
        // there yet): judged by its status and answer, not by this write.
        let _ = writing.write_all(&script).await;
        let _ = writing.shutdown().await;
        let out = writing.finish().await?;
        // A stream's command gives back its standard error only: the
        // answer comes on it.
        let mut said = out.stderr.head().to_vec();
        said.extend(out.stderr.tail());
        let answer = Answer::read(&said, pass);
        if !out.status.success() || (pass == Pass::Move && answer.gone) {
            return Err(RestoreError::Place {
                doing: if pass == Pass::Move {
                    "put the restore in place under"
                } else {
                    "look at"
                },
                host: self.name.to_string(),
                dir: request.dir.clone(),
                said: answer.other.join("; "),
            });
        }
        Ok(answer)
    }

    /// Streams the snapshot's tar into `tar -x` in a new private staging
    /// directory inside the target.
    async fn unpack(&self, staging: &str) -> Result<Unpacked, RestoreError> {
        let request = self.request;
        let keep = request.options.keep_privileges;
        let untar = format!(
            "set -e; umask 077; mkdir -p -- {dir}; cd -P -- {dir}; mkdir -m 700 -- {staging}; cd -- {staging}; \
             [ \"$(stat -c %u:%a .)\" = \"$(id -u):700\" ] && [ -z \"$(ls -A)\" ]; \
             exec tar --extract --file=- --preserve-permissions{owners}",
            dir = shell_quote(&request.dir),
            owners = if keep { "" } else { " --no-same-owner" },
        );
        let mut writing = self
            .host
            .write_stream(&request.commands.command(untar))
            .await?;
        let (spout, mut tap) = bridge::spout();
        let (store, snapshot, what, options) = (
            request.store.clone(),
            request.snapshot.clone(),
            request.what.clone(),
            request.options,
        );
        let producer = tokio::task::spawn_blocking(move || match &what {
            What::Path(path) => store.restore_to_tar(&snapshot, path, spout, options),
            What::Files(files) => store.restore_files_to_tar(&snapshot, files, spout, options),
        });
        let deadline = Deadline::new(
            request.commands.limit.unwrap_or(Duration::MAX),
            request.commands.cancel.clone(),
        );
        let mut sent = Ok(());
        while let Some(chunk) = tap.next().await {
            self.progress
                .bytes_done
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            sent = deadline.bound("tar", writing.write_all(&chunk)).await;
            if sent.is_err() {
                // The host's tar is gone: stop the store's side too.
                break;
            }
        }
        drop(tap);
        let _ = writing.shutdown().await;
        let out = writing.finish().await?;
        let made = producer
            .await
            .map_err(|err| RestoreError::Writer(err.to_string()))?;
        if !out.status.success() {
            return Err(RestoreError::Unpack {
                host: self.name.to_string(),
                status: out.status.to_string(),
                said: out.stderr.text().trim().to_string(),
            });
        }
        sent.map_err(RestoreError::Stream)?;
        let mut made = made?;
        // The stream keeps owners in its headers; `tar` as root restores
        // them unless told not to, which it is when they are dropped.
        made.dropped.owners = !keep && request.commands.become_root;
        Ok(Unpacked {
            digests: made.digests,
            landed: Landed {
                files: made.files,
                bytes: made.bytes,
                failed: made.failed,
                dropped: made.dropped,
                ..Landed::default()
            },
        })
    }

    /// Removes a staging directory, if it is there.
    async fn discard(&self, staging: &str) {
        let line = format!(
            "cd -P -- {} 2>/dev/null && [ -d {staging} ] && rm -rf -- {staging}",
            shell_quote(&self.request.dir)
        );
        let command = self.request.commands.command(line);
        let _ = self.host.exec(&command, &mut |_, _| {}).await;
    }
}

/// What an unpack landed, with the stream's hashes to check it by.
struct Unpacked {
    landed: Landed,
    /// The SHA-256 of each regular file the stream held, by raw path.
    digests: Vec<(Vec<u8>, String)>,
}

/// A name for the staging directory no other restore picks.
fn staging_name() -> String {
    use sha2::Digest;
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = format!(
        "{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(".nightshift-restore-{hex}")
}

/// Every entry under `path` of a snapshot as the tar stream names it.
pub fn listing(
    store: &Store,
    snapshot: &SnapshotEntry,
    path: &str,
    options: RestoreOptions,
) -> Result<Vec<Entry>, StoreError> {
    let top = store.node_at(snapshot, path)?;
    let mut packs = PackFiles::default();
    let mut out = Vec::new();
    let mut stack: Vec<(Option<usize>, Vec<u8>, nightshift_store::Node)> = Vec::new();
    let name = top.name.clone();
    stack.push((None, name, top));
    while let Some((parent, at, node)) = stack.pop() {
        let here = if at.is_empty() {
            None
        } else if !in_stream(&node, options) {
            continue;
        } else {
            out.push(Entry {
                path: String::from_utf8_lossy(&at).into_owned(),
                raw: at.clone(),
                parent,
                dir: node.kind == NodeKind::Dir,
                file: node.kind == NodeKind::File,
                size: node.size,
            });
            Some(out.len() - 1)
        };
        if let Some(subtree) = node.subtree {
            for child in store.load_tree(subtree, &mut packs)?.nodes {
                let mut child_path = at.clone();
                if !child_path.is_empty() {
                    child_path.push(b'/');
                }
                child_path.extend_from_slice(&child.name);
                stack.push((here, child_path, child));
            }
        }
    }
    Ok(out)
}

/// Whether the store's tar stream holds this entry: not one whose name
/// would escape, not a socket, and no device node or FIFO unless they are
/// kept.
fn in_stream(node: &nightshift_store::Node, options: RestoreOptions) -> bool {
    let special = matches!(
        node.kind,
        NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev
    );
    node.has_safe_name() && node.kind != NodeKind::Socket && (options.keep_privileges || !special)
}
