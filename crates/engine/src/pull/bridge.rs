//! The one bridge between the async transport and the synchronous store: a
//! bounded channel of byte chunks. The async side pumps a command's output
//! into a [`Feed`] and stops at the step's [`Deadline`]; the store reads the
//! [`Pipe`] on a blocking thread (`spawn_blocking`). The other way, for a
//! restore, the store writes into a [`Spout`] on a blocking thread and the
//! async side takes the chunks from its [`Tap`] to a command's input. No
//! worker is ever blocked, so any runtime runs a pull or a restore, a
//! single-threaded one included.

use std::future::Future;
use std::io::{self, Read, Write};
use std::time::Duration;

use nightshift_transport::Reading;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Chunks in flight: enough to keep both sides busy, little enough that a
/// slow store holds the host back rather than filling memory.
const DEPTH: usize = 8;
const CHUNK: usize = 64 << 10;

/// A channel for one command's output: the async end and the blocking one.
pub(crate) fn pipe() -> (Feed, Pipe) {
    let (sender, receiver) = mpsc::channel(DEPTH);
    (
        Feed(sender),
        Pipe {
            receiver,
            chunk: Vec::new(),
            at: 0,
            failed: None,
        },
    )
}

/// The reading end, for the store: ends when the feed is dropped, fails
/// when the feed sends an error (and on every read after). Read it on a
/// blocking thread only.
#[derive(Debug)]
pub(crate) struct Pipe {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    failed: Option<(io::ErrorKind, String)>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((kind, message)) = &self.failed {
                return Err(io::Error::new(*kind, message.clone()));
            }
            if self.at < self.chunk.len() || buf.is_empty() {
                let n = buf.len().min(self.chunk.len() - self.at);
                buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(err)) => self.failed = Some((err.kind(), err.to_string())),
            }
        }
    }
}

/// The async end.
#[derive(Debug)]
pub(crate) struct Feed(mpsc::Sender<io::Result<Vec<u8>>>);

/// How pumping a command's output ended.
#[derive(Debug)]
pub(crate) enum Pumped {
    /// The output ended and all of it went into the pipe.
    Ended,
    /// The store stopped reading (it failed, or needed no more).
    HungUp,
    /// Reading failed (the connection, the deadline); the pipe has the error.
    Failed(io::Error),
}

impl Feed {
    /// Copies `reading` into the pipe until it ends, within `deadline`.
    pub(crate) async fn pump(
        &self,
        reading: &mut Reading,
        line: &str,
        deadline: &Deadline,
    ) -> Pumped {
        loop {
            let mut chunk = vec![0; CHUNK];
            let reading = &mut *reading;
            let sent = deadline
                .bound(line, async move {
                    let n = reading.read(&mut chunk).await?;
                    chunk.truncate(n);
                    Ok((n == 0 || self.0.send(Ok(chunk)).await.is_ok()).then_some(n))
                })
                .await;
            match sent {
                Ok(Some(0)) => return Pumped::Ended,
                Ok(Some(_)) => {}
                Ok(None) => return Pumped::HungUp,
                Err(err) => {
                    self.fail(io::Error::new(err.kind(), err.to_string())).await;
                    return Pumped::Failed(err);
                }
            }
        }
    }

    /// Fails the pipe with `err`: the store's read of it returns `err`.
    pub(crate) async fn fail(&self, err: io::Error) {
        let _ = self.0.send(Err(err)).await;
    }
}

/// A channel the other way, for a command's input: the blocking end the
/// store writes into and the async end that hands the chunks on.
pub(crate) fn spout() -> (Spout, Tap) {
    let (sender, receiver) = mpsc::channel(DEPTH);
    (
        Spout {
            sender,
            chunk: Vec::with_capacity(CHUNK),
        },
        Tap(receiver),
    )
}

/// The writing end, for the store: sends a chunk each [`CHUNK`] bytes and
/// what is left on flush or drop; fails once the tap is gone. Write it on
/// a blocking thread only.
#[derive(Debug)]
pub(crate) struct Spout {
    sender: mpsc::Sender<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
}

impl Write for Spout {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.chunk.extend_from_slice(data);
        if self.chunk.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the host stopped reading"))
    }
}

impl Drop for Spout {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The async end of a [`Spout`]: `None` once the store is done writing.
#[derive(Debug)]
pub(crate) struct Tap(mpsc::Receiver<io::Result<Vec<u8>>>);

impl Tap {
    pub(crate) async fn next(&mut self) -> Option<Vec<u8>> {
        self.0.recv().await.and_then(Result::ok)
    }
}

/// Reads what is left of `reading` into nothing, within `deadline`, so its
/// channel ends cleanly.
pub(crate) async fn drain(reading: &mut Reading, line: &str, deadline: &Deadline) {
    let mut sink = tokio::io::sink();
    let _ = deadline
        .bound(line, tokio::io::copy(reading, &mut sink))
        .await;
}

/// When a step's time is up, and the run's cancellation.
#[derive(Debug, Clone)]
pub(crate) struct Deadline {
    /// `None` for no limit.
    at: Option<tokio::time::Instant>,
    /// The run's cancellation: a pump stops when it fires.
    cancel: CancellationToken,
}

impl Deadline {
    pub(crate) fn new(limit: Duration, cancel: CancellationToken) -> Self {
        Self {
            at: tokio::time::Instant::now().checked_add(limit),
            cancel,
        }
    }

    /// Runs `work` until the deadline or the run's cancellation.
    pub(crate) async fn bound<T>(
        &self,
        line: &str,
        work: impl Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        let late = async {
            match self.at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            done = work => done,
            // Not `Interrupted`, which readers retry.
            () = self.cancel.cancelled() => Err(io::Error::other(
                format!("`{line}` was stopped: the run was cancelled"),
            )),
            () = late => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "`{line}` did not finish within the step's time limit; raise its timeout if it needs longer"
                ),
            )),
        }
    }
}
