//! Real machines for tests, never mocks.
//!
//! Tier 2 of the test suite talks to OpenSSH's own `sshd`, started here on a
//! free 127.0.0.x port with throw-away keys ([`Sshd`]). Tier 3 runs against
//! the Docker fleet built by the scripts under `tests/fleet/` ([`Fleet`]):
//! Debian hosts with their own addresses, a local apt repository of fixture
//! packages, and ways to stop, pause, cut off, reboot or fill the disk of one
//! of them. This crate only drives those parts; it tests nothing itself.

mod fleet;
mod sshd;

pub use fleet::{Fleet, FleetError, FleetHost, Manifest};
pub use sshd::{Isolation, Sshd, SshdError};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root, for finding `tests/fleet/`.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this run is CI, where every tier is required.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Asserts that no process of this machine runs `marker` any more: what a
/// cancelled or timed-out command must not leave behind.
pub fn assert_nothing_left(marker: &str) {
    let left = Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// stdout of a finished command, lossily decoded, for assertions.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// OpenSSH's own client with strict host-key checking, no user config and no
/// prompts: the reference nightshift is compared with. Options may follow;
/// then the destination and the command.
fn openssh(known_hosts: &Path, identity: &Path, port: u16) -> Command {
    let mut command = Command::new("ssh");
    command
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(identity)
        .args(["-p", &port.to_string()])
        .stdin(std::process::Stdio::null());
    command
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
