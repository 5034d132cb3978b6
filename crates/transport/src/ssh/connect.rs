//! Reaching a host: the TCP connection (directly or through a bastion), the
//! SSH handshake with its host key checked, and authentication by key file
//! or agent.

use crate::{TransportError, Unreachable, Verdict, fingerprint, key_type};
use russh::Preferred;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::*;

pub(super) async fn tcp(endpoint: &Endpoint) -> Result<tokio::net::TcpStream, TransportError> {
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

pub(super) fn russh_config(
    config: &SshConfig,
    preferred: Option<Preferred>,
) -> Arc<client::Config> {
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
pub(super) fn cipher_order() -> &'static [russh::cipher::Name] {
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

pub(super) type Seen = Arc<Mutex<Option<(Verdict, PublicKey)>>>;

/// Key exchange and host-key verification; a refused key becomes the
/// precise error for what the known_hosts files say.
pub(super) async fn handshake(
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

pub(super) fn handshake_error(
    endpoint: &Endpoint,
    seen: &Seen,
    err: russh::Error,
) -> TransportError {
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
pub(super) async fn authenticate(
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

pub(super) fn identity_files(endpoint: &Endpoint) -> Vec<PathBuf> {
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

pub(super) fn expand_home(path: &Path) -> PathBuf {
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

pub(super) fn load_key(
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

pub(super) async fn try_agent(
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

pub(super) fn protocol(endpoint: &Endpoint, err: russh::Error) -> TransportError {
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
