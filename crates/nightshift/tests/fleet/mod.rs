//! Tier 3: `nightshift exec` on the Docker fleet.

use super::common::{Tree, stderr, stdout};
use nightshift_testbed::Fleet;

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn exec_across_five_hosts_with_one_stopped() {
    let fleet = Fleet::up("exec", 5).expect("private fleet");
    let m = fleet.manifest();
    let inventory = super::common::fleet_inventory(&fleet);
    let tree = Tree::new(
        &inventory,
        &std::fs::read_to_string(&m.known_hosts).expect("known_hosts"),
    );
    fleet.stop("host3").expect("stop host3");
    let out = tree.run(&[
        "exec",
        "group:fleet",
        "--become",
        "--",
        "cat",
        "/opt/fleet-data/own/identity.txt",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mut lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    lines.sort();
    let expected: Vec<String> = [1, 2, 4, 5]
        .iter()
        .map(|i| format!("host{i}  host{i} of fleet {}", m.name))
        .collect();
    assert_eq!(lines, expected);
    assert!(
        stderr(&out).contains("host3  ✗ host3 is unreachable"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("5 hosts: 4 ok, 1 failed (unreachable 1)"),
        "{}",
        stderr(&out)
    );
}
