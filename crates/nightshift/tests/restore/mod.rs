//! `nightshift restore` onto fleet hosts (tier 3): in place on the host the
//! files came from, to another host, and onto a full disk. The loopback
//! tier is in `cli.rs` (`ssh::a_restore_over_ssh_...`).

use std::time::Duration;

use nightshift_testbed::Fleet;

use crate::common::{stderr, stdout};

fn on(fleet: &Fleet, host: &str, line: &str) -> String {
    let out = fleet.ssh(host, line, Duration::from_secs(20)).expect("ssh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "fleet tier: run through tests/run"]
fn files_come_back_in_place_to_another_host_and_a_full_disk_is_reported() {
    let fleet = Fleet::up("restore", 2).expect("private fleet");
    let tree = crate::run::fleet::tree(
        &fleet,
        "name = \"backup\"\ntargets = [\"group:fleet\"]\nbecome = true\n\n[[steps]]\nname = \"etc\"\nbackup = { paths = [\"/etc\"] }\n",
    );
    let out = tree.run(&["run", "backup"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A config file deleted on host1 comes back in place, as it was.
    let before = on(
        &fleet,
        "host1",
        "sudo stat -c '%a %U:%G' /etc/sudoers.d/clerk && sudo cat /etc/sudoers.d/clerk",
    );
    on(&fleet, "host1", "sudo rm /etc/sudoers.d/clerk");
    let out = tree.run(&[
        "restore",
        "host1/latest:/etc/sudoers.d/clerk",
        "--in-place",
        "--yes",
        "--become",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "1 files, 20 B restored to host1:/etc/sudoers.d, all verified (SHA-256 on the target)"
        ),
        "{}",
        stdout(&out)
    );
    let after = on(
        &fleet,
        "host1",
        "sudo stat -c '%a %U:%G' /etc/sudoers.d/clerk && sudo cat /etc/sudoers.d/clerk",
    );
    assert_eq!(after, before);
    assert!(after.starts_with("440 root:root"), "{after}");

    // host1's apt configuration onto host2, under /tmp/restore.
    let out = tree.run(&[
        "restore",
        "host1/latest:/etc/apt",
        "--to",
        "host2:/tmp/restore",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("restored to host2:/tmp/restore, all verified"),
        "{}",
        stdout(&out)
    );
    let sources = "/etc/apt/sources.list.d/fixtures.sources";
    assert_eq!(
        on(
            &fleet,
            "host2",
            "cat /tmp/restore/apt/sources.list.d/fixtures.sources"
        ),
        on(&fleet, "host1", &format!("cat {sources}"))
    );

    // A full disk on the target: a clear error and a record that says so.
    fleet.fill_disk("host2", "/srv").expect("fill");
    let out = tree.run(&[
        "restore",
        "host1/latest:/etc/apt",
        "--to",
        "host2:/srv/restore",
        "--become",
    ]);
    fleet.free_disk("host2", "/srv").expect("free");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("restoring to host2:/srv/restore failed")
            && stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let history = tree.run(&["history", "host2", "--json"]);
    let events: serde_json::Value = serde_json::from_slice(&history.stdout).expect("JSON");
    let restores: Vec<&str> = events
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["kind"] == "restore")
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(restores, ["failed, verified none", "ok, verified all"]);
}
