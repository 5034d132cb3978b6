//! Tier 3: the Docker fleet. These tests are ignored by a plain `cargo test`;
//! `tests/run` builds the fleet, starts the shared one and runs them.

use std::thread;
use std::time::{Duration, Instant};

use nightshift_testbed::{Fleet, stdout};

const CONNECT: Duration = Duration::from_secs(3);

/// ssh gives up within its connect timeout (plus slack), with status 255.
fn assert_unreachable(fleet: &Fleet, host: &str) {
    let started = Instant::now();
    let output = fleet.ssh(host, "true", CONNECT).expect("ssh runs");
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(255), "{host} still answers");
    assert!(
        elapsed < CONNECT + Duration::from_secs(5),
        "took {elapsed:?}"
    );
}

fn ssh_ok(fleet: &Fleet, host: &str, command: &str) -> String {
    let output = fleet.ssh(host, command, CONNECT).expect("ssh runs");
    assert!(
        output.status.success(),
        "`{command}` on {host} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn every_host_sees_the_fixture_updates() {
    let fleet = Fleet::shared().expect("shared fleet");
    assert_eq!(fleet.hosts().len(), 5, "the shared fleet has 5 hosts");
    thread::scope(|scope| {
        for host in fleet.hosts() {
            let fleet = &fleet;
            scope.spawn(move || {
                let listing = ssh_ok(
                    fleet,
                    &host.name,
                    "sudo apt-get update -q >/dev/null && apt list --upgradable 2>/dev/null",
                );
                assert!(
                    listing
                        .contains("nightshift-fixture-app/fixtures 1.1 all [upgradable from: 1.0]"),
                    "{}: {listing}",
                    host.name
                );
                assert!(
                    listing.contains(
                        "nightshift-fixture-lib/fixtures-security 1.1 all [upgradable from: 1.0]"
                    ),
                    "{}: {listing}",
                    host.name
                );
            });
        }
    });
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn hosts_share_some_files_and_differ_in_others() {
    let fleet = Fleet::shared().expect("shared fleet");
    let shared = std::fs::read(&fleet.manifest().shared_file).expect("shared file");
    let mut identities = Vec::new();
    for host in fleet.hosts() {
        let sum = ssh_ok(
            &fleet,
            &host.name,
            "sha256sum < /opt/fleet-data/shared/shared.bin",
        );
        assert_eq!(
            sum.split_whitespace().next(),
            Some(sha256_hex(&shared).as_str())
        );
        identities.push(ssh_ok(
            &fleet,
            &host.name,
            "cat /opt/fleet-data/own/identity.txt",
        ));
    }
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), fleet.hosts().len());
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn a_stopped_host_fails_to_connect_within_the_timeout_and_comes_back() {
    let fleet = Fleet::up("stop", 1).expect("private fleet");
    ssh_ok(&fleet, "host1", "true");
    fleet.stop("host1").expect("stop");
    assert_unreachable(&fleet, "host1");
    fleet.start("host1").expect("start");
    ssh_ok(&fleet, "host1", "true");
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn a_disconnected_or_paused_host_is_unreachable_until_restored() {
    let fleet = Fleet::up("cut", 1).expect("private fleet");
    fleet.disconnect("host1").expect("disconnect");
    assert_unreachable(&fleet, "host1");
    fleet.reconnect("host1").expect("reconnect");
    assert_eq!(ssh_ok(&fleet, "host1", "hostname"), "host1\n");

    fleet.pause("host1").expect("pause");
    assert_unreachable(&fleet, "host1");
    fleet.unpause("host1").expect("unpause");
    ssh_ok(&fleet, "host1", "true");
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn a_full_disk_refuses_writes() {
    const WRITE: &str = "sudo sh -c 'head -c 4096 /dev/zero > /srv/more'";
    let fleet = Fleet::up("disk", 1).expect("private fleet");
    fleet.fill_disk("host1", "/srv").expect("fill");
    let output = fleet.ssh("host1", WRITE, CONNECT).expect("ssh runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("No space left on device"), "{stderr}");
    fleet.free_disk("host1", "/srv").expect("free");
    ssh_ok(&fleet, "host1", WRITE);
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn a_kernel_update_asks_for_a_reboot_and_a_reboot_restarts_the_host() {
    let fleet = Fleet::up("reboot", 1).expect("private fleet");
    ssh_ok(
        &fleet,
        "host1",
        "sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q nightshift-fixture-kernel >/dev/null",
    );
    assert_eq!(
        ssh_ok(
            &fleet,
            "host1",
            "cat /usr/share/nightshift-fixture-kernel/VERSION"
        ),
        "1.1\n"
    );
    ssh_ok(&fleet, "host1", "test -f /run/reboot-required");
    let boot_before = ssh_ok(&fleet, "host1", "cut -d' ' -f22 /proc/1/stat");

    // Reboot the way an operator (and nightshift) does: `sudo reboot` over SSH.
    let _ = fleet.ssh("host1", "sudo reboot", CONNECT);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let now = fleet
            .ssh("host1", "cut -d' ' -f22 /proc/1/stat", CONNECT)
            .expect("ssh runs");
        if now.status.success() && stdout(&now) != boot_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "host1 did not come back from `sudo reboot`"
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert_ne!(
        ssh_ok(&fleet, "host1", "cut -d' ' -f22 /proc/1/stat"),
        boot_before,
        "PID 1 restarted"
    );
    ssh_ok(&fleet, "host1", "test ! -e /run/reboot-required");
    assert_eq!(
        ssh_ok(
            &fleet,
            "host1",
            "cat /usr/share/nightshift-fixture-kernel/VERSION"
        ),
        "1.1\n"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    stdout(&output)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}
