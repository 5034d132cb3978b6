mod connect;

use crate::command::{Ended, PGID_MARKER, sudo_wants_password};
use crate::output::Lines;
use crate::stream::{Reading, Writing};
use crate::{
    Captured, Command, ExitStatus, KnownHosts, Output, Stream, TransportError, Unreachable, Verdict,
};
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::PublicKey;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use connect::*;
pub use connect::{key_is_encrypted, scan_host_keys};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The inventory name, used in messages.
    pub name: String,
    /// Address or DNS name to connect to; known_hosts is checked for it.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity: Option<PathBuf>,
    /// A bastion to tunnel through (`ProxyJump`).
    pub jump: Option<Box<Endpoint>>,
}

/// Connection settings shared by every host of a run.
#[derive(Clone)]
pub struct SshConfig {
    pub known_hosts: Arc<KnownHosts>,
    pub connect_timeout: Duration,
    /// Keepalives keep a silent `apt-get upgrade` from looking dead: the
    /// connection is given up only after `keepalive_max` unanswered ones.
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    /// Channels open at once on one connection; below sshd's `MaxSessions`.
    pub channels_per_host: usize,
    /// Passphrase for encrypted identity files. Never logged.
    pub passphrase: Option<String>,
    /// The ssh-agent socket to try keys from; `SSH_AUTH_SOCK` by default.
    pub agent: Option<PathBuf>,
}

impl std::fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_max", &self.keepalive_max)
            .field("channels_per_host", &self.channels_per_host)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl SshConfig {
    pub fn new(known_hosts: KnownHosts) -> Self {
        Self {
            known_hosts: Arc::new(known_hosts),
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_max: 10,
            channels_per_host: 8,
            passphrase: None,
            agent: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
        }
    }
}

/// The client side of one connection: checks the server's key and keeps
/// what it found, so a refusal can be explained precisely.
struct Client {
    address: String,
    port: u16,
    known_hosts: Arc<KnownHosts>,
    /// Accept any key (only for `scan_host_keys`, which never authenticates).
    scanning: bool,
    seen: Arc<Mutex<Option<(Verdict, PublicKey)>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let verdict = self.known_hosts.check(&self.address, self.port, key);
        let trusted = verdict == Verdict::Trusted || self.scanning;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((verdict, key.clone()));
        }
        Ok(trusted)
    }
}

/// One authenticated SSH connection to a host, reused for every command of
/// a run; each command gets its own channel, closed when it ends.
pub struct Session {
    name: String,
    handle: Handle<Client>,
    channels: Arc<Semaphore>,
    /// The bastion's session, kept alive as long as the tunnel through it.
    _jump: Option<Box<Session>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connects, verifies the host key and authenticates, within the
    /// connect timeout.
    pub async fn connect(endpoint: &Endpoint, config: &SshConfig) -> Result<Self, TransportError> {
        let limit = config.connect_timeout;
        match tokio::time::timeout(limit, Self::connect_inner(endpoint, config)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Unreachable {
                host: endpoint.name.clone(),
                reason: Unreachable::TimedOut(limit),
            }),
        }
    }

    async fn connect_inner(
        endpoint: &Endpoint,
        config: &SshConfig,
    ) -> Result<Self, TransportError> {
        let (stream, jump): (Box<dyn Io>, _) = match &endpoint.jump {
            None => (Box::new(tcp(endpoint).await?), None),
            Some(bastion) => {
                let bastion = Box::pin(Self::connect_inner(bastion, config)).await?;
                let channel = bastion
                    .handle
                    .channel_open_direct_tcpip(
                        endpoint.address.clone(),
                        endpoint.port.into(),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|err| TransportError::Unreachable {
                        host: endpoint.name.clone(),
                        reason: Unreachable::Other(format!("through {}: {err}", bastion.name)),
                    })?;
                (Box::new(channel.into_stream()), Some(Box::new(bastion)))
            }
        };
        let (mut handle, seen) = handshake(endpoint, config, stream, false).await?;
        authenticate(&mut handle, endpoint, config).await?;
        drop(seen);
        Ok(Self {
            name: endpoint.name.clone(),
            handle,
            channels: Arc::new(Semaphore::new(config.channels_per_host.max(1))),
            _jump: jump,
        })
    }

    /// Runs `command` on its own channel, streaming lines to `on_line`.
    pub async fn exec(
        &self,
        command: &Command,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, TransportError> {
        if command.cancel.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Err(command.cut_short(&self.name, true));
        }
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| self.lost("waiting for a channel"))?;
        let mut channel = self.open_session().await?;
        channel
            .exec(true, command.remote())
            .await
            .map_err(|err| self.channel_error(err, "starting a command"))?;
        let mut run = Running::default();
        let outcome = command.bounded(run.pump(&mut channel, on_line)).await;
        if matches!(outcome, Ended::Cancelled) && run.pgid.is_none() {
            // Cancelled before the shell said its process group: give it a
            // moment to, so the command can still be stopped.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), run.pump(&mut channel, on_line)).await;
        }
        let _ = channel.close().await;
        let status = match outcome {
            Ended::Done(status) => status,
            Ended::TimedOut => return Err(self.cut_short(command, &run, false).await),
            Ended::Cancelled => return Err(self.cut_short(command, &run, true).await),
        };
        let status = status.ok_or_else(|| self.lost(&format!("running `{}`", command.shown())))?;
        if command.become_root
            && status == ExitStatus::Code(1)
            && sudo_wants_password(&run.stderr.text())
        {
            return Err(TransportError::SudoNeedsPassword {
                host: self.name.clone(),
            });
        }
        Ok(Output {
            status,
            stdout: run.stdout,
            stderr: run.stderr,
        })
    }

    /// Starts `command` and hands back its stdout as a reader.
    pub async fn read_stream(&self, command: &Command) -> Result<Reading, TransportError> {
        let (mut channel, permit) = self.start(command).await?;
        let (mut sink, source) = tokio::io::duplex(256 * 1024);
        let host = self.name.clone();
        let shown = command.shown();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let drained = drain(&mut channel, Some(&mut sink)).await;
            drop(sink);
            finished(&host, &shown, drained)
        });
        Ok(Reading {
            reader: Some(Box::pin(source)),
            finish: Box::pin(joined(task, self.name.clone())),
        })
    }

    /// Starts `command` and hands back a writer into its stdin.
    pub async fn write_stream(&self, command: &Command) -> Result<Writing, TransportError> {
        let (mut channel, permit) = self.start(command).await?;
        let writer = channel.make_writer();
        let host = self.name.clone();
        let shown = command.shown();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let drained = drain(&mut channel, None).await;
            finished(&host, &shown, drained)
        });
        Ok(Writing::new(
            Box::pin(writer),
            Box::pin(joined(task, self.name.clone())),
        ))
    }

    /// Opens a channel running an SSH subsystem (such as `sftp`) and hands
    /// back its byte stream; the caller speaks the subsystem's protocol.
    pub async fn subsystem(
        &self,
        name: &str,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin + Send + use<>, TransportError> {
        let channel = self.open_session().await?;
        channel
            .request_subsystem(true, name)
            .await
            .map_err(|err| self.channel_error(err, "starting a subsystem"))?;
        Ok(channel.into_stream())
    }

    /// Opens a channel for a stream and starts the command on it, without
    /// the process-group wrapper (a stream has no timeout of its own).
    async fn start(
        &self,
        command: &Command,
    ) -> Result<
        (
            russh::Channel<client::Msg>,
            tokio::sync::OwnedSemaphorePermit,
        ),
        TransportError,
    > {
        let permit = self
            .channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.lost("waiting for a channel"))?;
        let channel = self.open_session().await?;
        let sudo = if command.become_root {
            "sudo -n -- "
        } else {
            ""
        };
        let line = format!(
            "exec {sudo}/bin/sh -c {}",
            crate::shell_quote(&command.inner())
        );
        channel
            .exec(true, line)
            .await
            .map_err(|err| self.channel_error(err, "starting a command"))?;
        Ok((channel, permit))
    }

    /// Stops a command that timed out or was cancelled, and says which.
    async fn cut_short(&self, command: &Command, run: &Running, cancelled: bool) -> TransportError {
        self.stop_group(run.pgid, command.become_root).await;
        command.cut_short(&self.name, cancelled)
    }

    /// Stops a timed-out command's whole process group, first asking, then
    /// insisting.
    async fn stop_group(&self, pgid: Option<u32>, become_root: bool) {
        let Some(pgid) = pgid else {
            return;
        };
        let sudo = if become_root { "sudo -n " } else { "" };
        let kill = Command::new(format!(
            "{sudo}kill -s TERM -- -{pgid} 2>/dev/null; sleep 1; {sudo}kill -s KILL -- -{pgid} 2>/dev/null; true"
        ))
        .timeout(Duration::from_secs(10));
        if let Err(err) = Box::pin(self.exec(&kill, &mut |_, _| {})).await {
            tracing::warn!(host = %self.name, %err, "could not stop a timed-out command");
        }
    }

    /// Opens a session channel. sshd frees a session's slot only when it
    /// cleans up the closed channel, a moment after the client saw it close
    /// (its log shows "no more sessions" before "Close session"): a refusal is tried again for a while before it is
    /// reported, so commands that follow each other at `MaxSessions` do not
    /// fail on a busy host.
    async fn open_session(&self) -> Result<russh::Channel<client::Msg>, TransportError> {
        let mut pause = Duration::from_millis(20);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(_))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other.map_err(|err| self.channel_error(err, "opening a channel")),
            }
        }
    }

    fn lost(&self, during: &str) -> TransportError {
        TransportError::ConnectionLost {
            host: self.name.clone(),
            during: during.to_string(),
        }
    }

    fn channel_error(&self, err: russh::Error, during: &str) -> TransportError {
        match err {
            russh::Error::ChannelOpenFailure(reason) => TransportError::Protocol {
                host: self.name.clone(),
                reason: format!(
                    "the server refused a channel while {during}: {reason:?} (is MaxSessions too low?)"
                ),
            },
            _ => self.lost(during),
        }
    }

    /// Says goodbye to the server.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a stream's channel left once it closed.
struct Drained {
    status: Option<ExitStatus>,
    stderr: Captured,
    stdout_bytes: u64,
}

/// Reads a stream's channel until it closes, passing stdout to `sink` (if
/// any; a sink that went away only means the rest is discarded) and
/// keeping stderr and the exit status.
async fn drain(
    channel: &mut russh::Channel<client::Msg>,
    mut sink: Option<&mut tokio::io::DuplexStream>,
) -> Drained {
    let mut drained = Drained {
        status: None,
        stderr: Captured::default(),
        stdout_bytes: 0,
    };
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                drained.stdout_bytes += data.len() as u64;
                if let Some(out) = sink.as_deref_mut()
                    && out.write_all(&data).await.is_err()
                {
                    sink = None;
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => drained.stderr.push(&data),
            ChannelMsg::ExitStatus { exit_status } => {
                drained.status = Some(ExitStatus::Code(exit_status as i32))
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                drained.status = Some(ExitStatus::Signal(signal(&signal_name)))
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    drained
}

/// The outcome of a stream's command once its channel has closed.
fn finished(host: &str, shown: &str, drained: Drained) -> Result<Output, TransportError> {
    let Drained {
        status,
        stderr,
        stdout_bytes,
    } = drained;
    let status = status.ok_or_else(|| TransportError::ConnectionLost {
        host: host.to_string(),
        during: format!("streaming `{shown}`"),
    })?;
    if status == ExitStatus::Code(1) && sudo_wants_password(&stderr.text()) {
        return Err(TransportError::SudoNeedsPassword {
            host: host.to_string(),
        });
    }
    let mut stdout = Captured::default();
    stdout.push(format!("{stdout_bytes} bytes streamed\n").as_bytes());
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

async fn joined(
    task: tokio::task::JoinHandle<Result<Output, TransportError>>,
    host: String,
) -> Result<Output, TransportError> {
    task.await.unwrap_or_else(|_| {
        Err(TransportError::ConnectionLost {
            host,
            during: "streaming".into(),
        })
    })
}

/// The state of one running command.
#[derive(Default)]
struct Running {
    stdout: Captured,
    stderr: Captured,
    out_lines: Lines,
    err_lines: Lines,
    pgid: Option<u32>,
}

impl Running {
    /// Reads channel messages until the channel closes; the exit status, or
    /// `None` if the connection went away first.
    async fn pump(
        &mut self,
        channel: &mut russh::Channel<client::Msg>,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Option<ExitStatus> {
        let mut status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    self.stdout.push(&data);
                    self.out_lines.feed(&data, |l| on_line(Stream::Stdout, l));
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => self.stderr_bytes(&data, on_line),
                ChannelMsg::ExitStatus { exit_status } => {
                    status = Some(ExitStatus::Code(exit_status as i32))
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    status = Some(ExitStatus::Signal(signal(&signal_name)))
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        self.out_lines.finish(|l| on_line(Stream::Stdout, l));
        let pgid = &mut self.pgid;
        self.err_lines.finish(|l| {
            if !take_marker(pgid, l) {
                on_line(Stream::Stderr, l);
            }
        });
        status
    }

    /// Stderr minus the process-group marker the wrapper prints first.
    fn stderr_bytes(&mut self, data: &[u8], on_line: &mut (dyn FnMut(Stream, &str) + Send)) {
        let mut kept = Vec::new();
        let pgid = &mut self.pgid;
        self.err_lines.feed(data, |l| {
            if !take_marker(pgid, l) {
                on_line(Stream::Stderr, l);
                kept.extend_from_slice(l.as_bytes());
                kept.push(b'\n');
            }
        });
        self.stderr.push(&kept);
    }
}

fn take_marker(pgid: &mut Option<u32>, line: &str) -> bool {
    match (pgid.is_none(), line.strip_prefix(PGID_MARKER)) {
        (true, Some(id)) => {
            *pgid = id.trim().parse().ok();
            true
        }
        _ => false,
    }
}

fn signal(sig: &russh::Sig) -> String {
    let name = format!("{sig:?}");
    name.strip_prefix("Custom(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .map(str::to_string)
        .unwrap_or(name)
}
