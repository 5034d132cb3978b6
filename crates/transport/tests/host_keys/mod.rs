//! Host keys: an unknown one refused with its fingerprint, a changed one
//! named by file and line, a revoked one refused.

use std::path::PathBuf;

use nightshift_testbed::Sshd;
use nightshift_transport::{Session, TransportError};

use crate::{config, endpoint};

#[tokio::test]
async fn an_unknown_host_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start().expect("sshd");
    let empty = tempfile::NamedTempFile::new().expect("temp");
    let err = Session::connect(&endpoint(&sshd), &config(empty.path()))
        .await
        .expect_err("unknown host");
    let TransportError::HostKeyUnknown {
        fingerprint,
        key_type,
        ..
    } = &err
    else {
        panic!("wrong error: {err}");
    };
    assert_eq!(key_type, "ED25519");
    assert_eq!(fingerprint, &openssh_fingerprint(&sshd));
    assert!(
        err.to_string().contains("nightshift hosts trust loop"),
        "{err}"
    );
    assert_eq!(err.kind(), "host_key_unknown");
}

#[tokio::test]
async fn a_changed_host_key_names_the_file_and_line() {
    let sshd = Sshd::start().expect("sshd");
    let other = Sshd::start().expect("second sshd");
    let known = tempfile::NamedTempFile::new().expect("temp");
    // Line 2 claims this server's address with the other server's key.
    let other_key = other.host_public_key().expect("key");
    let text = format!(
        "# fleet\n[{}]:{} {other_key}\n",
        sshd.addr().ip(),
        sshd.addr().port()
    );
    std::fs::write(known.path(), text).expect("write");
    let err = Session::connect(&endpoint(&sshd), &config(known.path()))
        .await
        .expect_err("changed key");
    let TransportError::HostKeyChanged { file, line, .. } = &err else {
        panic!("wrong error: {err}");
    };
    assert_eq!((file, *line), (&known.path().to_path_buf(), 2));
    assert_eq!(err.kind(), "host_key_changed");
}

#[tokio::test]
async fn a_revoked_host_key_is_refused() {
    let sshd = Sshd::start().expect("sshd");
    let known = tempfile::NamedTempFile::new().expect("temp");
    let key = sshd.host_public_key().expect("key");
    std::fs::write(
        known.path(),
        format!(
            "@revoked * {key}\n[{}]:{} {key}\n",
            sshd.addr().ip(),
            sshd.addr().port()
        ),
    )
    .expect("write");
    let err = Session::connect(&endpoint(&sshd), &config(known.path()))
        .await
        .expect_err("revoked");
    assert!(
        matches!(err, TransportError::HostKeyRevoked { line: 1, .. }),
        "{err}"
    );
}

fn openssh_fingerprint(sshd: &Sshd) -> String {
    let pubkey: PathBuf = sshd.client_key().with_file_name("host_ed25519.pub");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string()
}
