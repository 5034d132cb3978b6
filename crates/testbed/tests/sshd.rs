//! Tier 2: OpenSSH's sshd on loopback, started and stopped by the testbed.

#![allow(
    clippy::print_stderr,
    reason = "a test says which of its parts this machine skips"
)]

use nightshift_testbed::{Sshd, stdout};

#[test]
fn a_command_runs_through_a_real_sshd() {
    let sshd = Sshd::start().expect("sshd starts");
    let output = sshd.ssh("echo hello from $(id -un)").expect("ssh runs");
    assert!(
        output.status.success(),
        "ssh failed; sshd log:\n{}",
        sshd.log()
    );
    assert_eq!(stdout(&output), format!("hello from {}\n", sshd.user()));
}

#[test]
fn several_servers_run_at_once_on_distinct_addresses() {
    let servers: Vec<Sshd> = (0..3)
        .map(|_| Sshd::start().expect("sshd starts"))
        .collect();
    let mut ips: Vec<_> = servers.iter().map(|s| s.addr().ip()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "each server has its own loopback address");
    for sshd in &servers {
        let output = sshd.ssh("exit 7").expect("ssh runs");
        assert_eq!(output.status.code(), Some(7), "sshd log:\n{}", sshd.log());
    }
}

#[test]
fn a_server_that_is_not_known_is_refused() {
    let sshd = Sshd::start().expect("sshd starts");
    std::fs::write(sshd.known_hosts(), "").expect("empty known_hosts");
    let output = sshd.ssh("true").expect("ssh runs");
    assert_eq!(output.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_server_stops_when_dropped() {
    let sshd = Sshd::start().expect("sshd starts");
    let addr = sshd.addr();
    drop(sshd);
    assert!(
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_err()
    );
}

/// The login reads none of the machine's start-up files: its shell is
/// `/bin/sh` and its home holds nothing, so a `~/.bashrc` that prints (or
/// races, as `pyenv init` does) cannot change what a test sees. Required in
/// CI, which runs as root where the mount namespace always works.
#[test]
fn the_login_shell_is_sh_with_an_empty_home() {
    use nightshift_testbed::Isolation;
    if Isolation::get() == Isolation::None {
        assert!(
            !nightshift_testbed::in_ci(),
            "CI runs as root, where sshd must get a private /etc/passwd"
        );
        eprintln!("no mount or user namespace here: the login reads the user's own start-up files");
        return;
    }
    let sshd = Sshd::start().expect("sshd starts");
    let output = sshd
        .ssh(r#"printf '%s|' "$0" "$SHELL"; ls -A "$HOME" | wc -l"#)
        .expect("ssh runs");
    assert!(output.status.success(), "sshd log:\n{}", sshd.log());
    assert_eq!(stdout(&output), "sh|/bin/sh|0\n");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
