//! Byte streams to and from a command on a host: what backup reads (a
//! remote `tar` or `cat`) and what restore writes (into a remote `tar -x`).
//! Both are plain exec channels, with the command's exit status and stderr
//! reported once the stream is done.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::{Output, TransportError};

type Finish = Pin<Box<dyn Future<Output = Result<Output, TransportError>> + Send>>;

/// A command's standard output as a reader.
///
/// Read it steadily: russh delivers every channel of a connection through
/// one loop, so a `Reading` left unread while its command keeps writing
/// stalls the other channels of that connection (copying from one channel
/// into another on the same connection would deadlock; restores write
/// through their own connection).
pub struct Reading {
    pub(crate) reader: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub(crate) finish: Finish,
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading").finish_non_exhaustive()
    }
}

impl AsyncRead for Reading {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.reader.as_mut() {
            Some(reader) => reader.as_mut().poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Reading {
    /// Stops reading (whatever is left is discarded) and waits for the
    /// command's exit status and stderr.
    pub async fn finish(mut self) -> Result<Output, TransportError> {
        self.reader = None;
        self.finish.await
    }
}

/// A writer into a command's standard input. A command that ends before
/// reading all of it (a `tar -x` on a full disk) fails the next write,
/// rather than leaving it waiting for room that never comes.
pub struct Writing {
    pub(crate) writer: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub(crate) finish: Finish,
    pub(crate) ended: Option<Result<Output, TransportError>>,
}

impl std::fmt::Debug for Writing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writing").finish_non_exhaustive()
    }
}

impl Writing {
    pub(crate) fn new(writer: Pin<Box<dyn AsyncWrite + Send>>, finish: Finish) -> Self {
        Self {
            writer: Some(writer),
            finish,
            ended: None,
        }
    }

    /// Whether the command has ended; once it has, its outcome is kept
    /// for [`Writing::finish`].
    fn command_ended(&mut self, cx: &mut Context<'_>) -> bool {
        if self.ended.is_none()
            && let Poll::Ready(outcome) = self.finish.as_mut().poll(cx)
        {
            self.ended = Some(outcome);
        }
        self.ended.is_some()
    }

    fn writer(&mut self) -> io::Result<&mut Pin<Box<dyn AsyncWrite + Send>>> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the stream is finished"))
    }
}

impl AsyncWrite for Writing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.command_ended(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the command on the host ended before reading all of its input",
            )));
        }
        match self.writer() {
            Ok(w) => w.as_mut().poll_write(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writer() {
            Ok(w) => w.as_mut().poll_flush(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writer() {
            Ok(w) => w.as_mut().poll_shutdown(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

impl Writing {
    /// Closes the command's input and waits for it to exit.
    pub async fn finish(mut self) -> Result<Output, TransportError> {
        // Shutting down sends EOF over SSH; dropping closes a local pipe.
        if let Some(mut writer) = self.writer.take()
            && self.ended.is_none()
        {
            let _ = writer.shutdown().await;
        }
        match self.ended.take() {
            Some(outcome) => outcome,
            None => self.finish.await,
        }
    }
}
