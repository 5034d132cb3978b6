use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Preferred};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::command::{Ended, PGID_MARKER, sudo_wants_password};
use crate::output::Lines;
use crate::stream::{Reading, Writing};
use crate::{
    Captured, Command, ExitStatus, KnownHosts, Output, Stream, TransportError, Unreachable,
    Verdict, fingerprint, key_type,
};

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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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

async fn tcp(endpoint: &Endpoint) -> Result<tokio::net::TcpStream, TransportError> {
    let unreachable = |reason| TransportError::Unreachable {
        host: endpoint.name.clone(),
        reason,
    };
    let addrs: Vec<_> = tokio::net::lookup_host((endpoint.address.as_str(), endpoint.port))
        .await
        .map_err(|_| unreachable(Unreachable::NameNotResolved))?
        .collect();
    let mut last = Unreachable::NameNotResolved;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Unreachable::Refused
            }
            Err(err) => last = Unreachable::Other(err.to_string()),
        }
    }
    Err(unreachable(last))
}

fn russh_config(config: &SshConfig, preferred: Option<Preferred>) -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(config.keepalive_interval),
        keepalive_max: config.keepalive_max,
        nodelay: true,
        // A larger window than russh's 2 MiB keeps more of a backup
        // stream in flight (exec of `cat`: 242 to about 350 MiB/s).
        window_size: 8 << 20,
        preferred: Preferred {
            cipher: std::borrow::Cow::Borrowed(cipher_order()),
            ..preferred.unwrap_or_default()
        },
        ..client::Config::default()
    })
}

/// AES-256-GCM first where the CPU does AES and carry-less multiplication
/// in hardware: there it costs both ends (russh here, OpenSSL in the
/// host's sshd) a fraction of ChaCha20-Poly1305, which stays first
/// elsewhere. Both are AEAD ciphers OpenSSH offers by default.
fn cipher_order() -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    const AES_FIRST: &[russh::cipher::Name] = &[
        AES_256_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    const CHACHA_FIRST: &[russh::cipher::Name] = &[
        CHACHA20_POLY1305,
        AES_256_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        return AES_FIRST;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
    {
        return AES_FIRST;
    }
    CHACHA_FIRST
}

type Seen = Arc<Mutex<Option<(Verdict, PublicKey)>>>;

/// Key exchange and host-key verification; a refused key becomes the
/// precise error for what the known_hosts files say.
async fn handshake(
    endpoint: &Endpoint,
    config: &SshConfig,
    stream: Box<dyn Io>,
    scanning: bool,
) -> Result<(Handle<Client>, Seen), TransportError> {
    let seen: Seen = Arc::default();
    let client = Client {
        address: endpoint.address.clone(),
        port: endpoint.port,
        known_hosts: config.known_hosts.clone(),
        scanning,
        seen: seen.clone(),
    };
    match client::connect_stream(russh_config(config, None), stream, client).await {
        Ok(handle) => Ok((handle, seen)),
        Err(err) => Err(handshake_error(endpoint, &seen, err)),
    }
}

fn handshake_error(endpoint: &Endpoint, seen: &Seen, err: russh::Error) -> TransportError {
    let host = endpoint.name.clone();
    let found = seen.lock().ok().and_then(|s| s.clone());
    match (found, err) {
        (Some((Verdict::Unknown, key)), _) => TransportError::HostKeyUnknown {
            host,
            key_type: key_type(&key).to_string(),
            fingerprint: fingerprint(&key),
        },
        (Some((Verdict::Changed { file, line }, key)), _) => TransportError::HostKeyChanged {
            host,
            key_type: key_type(&key).to_string(),
            fingerprint: fingerprint(&key),
            file,
            line,
        },
        (Some((Verdict::Revoked { file, line }, key)), _) => TransportError::HostKeyRevoked {
            host,
            fingerprint: fingerprint(&key),
            file,
            line,
        },
        (_, russh::Error::IO(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => {
            TransportError::Unreachable {
                host,
                reason: Unreachable::Other("connection reset during the SSH handshake".into()),
            }
        }
        (_, err) => TransportError::Protocol {
            host,
            reason: err.to_string(),
        },
    }
}

/// Public-key authentication: the inventory's identity file, then keys in
/// ssh-agent, then the user's default keys.
async fn authenticate(
    handle: &mut Handle<Client>,
    endpoint: &Endpoint,
    config: &SshConfig,
) -> Result<(), TransportError> {
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    for path in identity_files(endpoint) {
        let explicit = endpoint.identity.as_deref() == Some(path.as_path());
        let key = match load_key(&path, config.passphrase.as_deref()) {
            Ok(key) => key,
            Err(err) if explicit => return Err(err),
            Err(_) => continue,
        };
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        match handle
            .authenticate_publickey(endpoint.user.clone(), key)
            .await
        {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure { .. }) => {}
            Err(err) => return Err(protocol(endpoint, err)),
        }
        if explicit {
            break;
        }
    }
    if let Some(socket) = &config.agent
        && try_agent(handle, endpoint, socket, rsa_hash, &mut tried).await?
    {
        return Ok(());
    }
    Err(TransportError::AuthFailed {
        host: endpoint.name.clone(),
        user: endpoint.user.clone(),
        tried: if tried.is_empty() {
            "no usable key".to_string()
        } else {
            tried.join(", ")
        },
    })
}

fn identity_files(endpoint: &Endpoint) -> Vec<PathBuf> {
    if let Some(path) = &endpoint.identity {
        return vec![expand_home(path)];
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| Path::new(&home).join(".ssh").join(name))
        .filter(|p| p.exists())
        .collect()
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Whether the identity file at `path` needs a passphrase.
pub fn key_is_encrypted(path: &Path) -> bool {
    matches!(
        russh::keys::load_secret_key(expand_home(path), None),
        Err(russh::keys::Error::KeyIsEncrypted)
    )
}

fn load_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<russh::keys::PrivateKey, TransportError> {
    russh::keys::load_secret_key(path, passphrase).map_err(|err| TransportError::Key {
        path: path.to_path_buf(),
        reason: match err {
            russh::keys::Error::KeyIsEncrypted => {
                "it is encrypted; set NIGHTSHIFT_SSH_PASSPHRASE or load it into ssh-agent"
                    .to_string()
            }
            other => other.to_string(),
        },
    })
}

async fn try_agent(
    handle: &mut Handle<Client>,
    endpoint: &Endpoint,
    socket: &Path,
    rsa_hash: Option<HashAlg>,
    tried: &mut Vec<String>,
) -> Result<bool, TransportError> {
    let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_uds(socket).await else {
        tracing::debug!(socket = %socket.display(), "ssh-agent not reachable");
        return Ok(false);
    };
    let identities = agent.request_identities().await.unwrap_or_default();
    for identity in identities {
        let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        tried.push(format!("agent key {comment}"));
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        match handle
            .authenticate_publickey_with(endpoint.user.clone(), key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(AuthResult::Failure { .. }) | Err(_) => {}
        }
    }
    Ok(false)
}

fn protocol(endpoint: &Endpoint, err: russh::Error) -> TransportError {
    TransportError::Protocol {
        host: endpoint.name.clone(),
        reason: err.to_string(),
    }
}

/// The host keys a server offers, one connection per key type, without
/// authenticating: what `nightshift hosts trust` shows before recording.
pub async fn scan_host_keys(
    endpoint: &Endpoint,
    config: &SshConfig,
) -> Result<Vec<PublicKey>, TransportError> {
    use russh::keys::Algorithm;
    let kinds = [
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: russh::keys::EcdsaCurve::NistP256,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
    ];
    let mut keys = Vec::new();
    let mut last_err = None;
    for kind in kinds {
        let preferred = Preferred {
            key: std::borrow::Cow::Owned(vec![kind]),
            ..Preferred::default()
        };
        let stream = match tokio::time::timeout(config.connect_timeout, tcp(endpoint)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(TransportError::Unreachable {
                    host: endpoint.name.clone(),
                    reason: Unreachable::TimedOut(config.connect_timeout),
                });
            }
        };
        let seen: Seen = Arc::default();
        let client = Client {
            address: endpoint.address.clone(),
            port: endpoint.port,
            known_hosts: config.known_hosts.clone(),
            scanning: true,
            seen: seen.clone(),
        };
        match client::connect_stream(russh_config(config, Some(preferred)), stream, client).await {
            Ok(handle) => {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "", "en")
                    .await;
            }
            Err(err) => last_err = Some(err),
        }
        if let Some((_, key)) = seen.lock().ok().and_then(|s| s.clone()) {
            keys.push(key);
        }
    }
    match (keys.is_empty(), last_err) {
        (true, Some(err)) => Err(protocol(endpoint, err)),
        _ => Ok(keys),
    }
}
