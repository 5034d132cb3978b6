//! Client authentication: a wrong key fails; RSA, ECDSA and encrypted keys
//! and keys in ssh-agent authenticate.

use std::path::PathBuf;
use std::time::Duration;

use nightshift_testbed::Sshd;
use nightshift_transport::{Command, Session, TransportError};

use crate::{config, endpoint, run};

#[tokio::test]
async fn a_wrong_key_fails_authentication() {
    let sshd = Sshd::start().expect("sshd");
    let stranger = Sshd::start().expect("another sshd, for its client key");
    let mut endpoint = endpoint(&sshd);
    endpoint.identity = Some(stranger.client_key());
    let err = Session::connect(&endpoint, &config(&sshd.known_hosts()))
        .await
        .expect_err("wrong key");
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&stranger.client_key().display().to_string()),
        "{err}"
    );
}

/// A throw-away key of another type, authorised on `sshd`.
fn extra_key(sshd: &Sshd, dir: &std::path::Path, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(format!("id_{kind}"));
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    sshd.authorize(&path.with_extension("pub"))
        .expect("authorize");
    path
}

#[tokio::test]
async fn rsa_and_ecdsa_keys_and_encrypted_ones_authenticate() {
    let sshd = Sshd::start().expect("sshd");
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["rsa", "ecdsa"] {
        let mut endpoint = endpoint(&sshd);
        endpoint.identity = Some(extra_key(&sshd, dir.path(), kind, ""));
        let session = Session::connect(&endpoint, &config(&sshd.known_hosts()))
            .await
            .unwrap_or_else(|err| panic!("{kind}: {err}"));
        assert!(
            run(&session, Command::new("true"))
                .await
                .0
                .expect("runs")
                .status
                .success()
        );
    }
    let mut endpoint = endpoint(&sshd);
    endpoint.identity = Some(extra_key(&sshd, dir.path(), "ed25519", "correct horse"));
    let mut config = config(&sshd.known_hosts());
    let err = Session::connect(&endpoint, &config)
        .await
        .expect_err("no passphrase");
    assert!(
        err.to_string().contains("NIGHTSHIFT_SSH_PASSPHRASE"),
        "{err}"
    );
    config.passphrase = Some("wrong".into());
    let err = Session::connect(&endpoint, &config)
        .await
        .expect_err("wrong passphrase");
    assert!(
        !err.to_string().contains("wrong"),
        "the passphrase never shows: {err}"
    );
    config.passphrase = Some("correct horse".into());
    Session::connect(&endpoint, &config)
        .await
        .expect("right passphrase");
}

#[tokio::test]
async fn keys_in_ssh_agent_authenticate() {
    let sshd = Sshd::start().expect("sshd");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = extra_key(&sshd, dir.path(), "ed25519", "");
    let socket = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    for _ in 0..50 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let mut endpoint = endpoint(&sshd);
    endpoint.identity = None;
    let mut config = config(&sshd.known_hosts());
    config.agent = Some(socket);
    let result = Session::connect(&endpoint, &config).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let session = result.expect("agent key accepted");
    assert!(
        run(&session, Command::new("true"))
            .await
            .0
            .expect("runs")
            .status
            .success()
    );
}
