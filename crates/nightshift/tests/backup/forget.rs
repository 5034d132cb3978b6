//! `nightshift forget`: the inventory's retention policies and the
//! command's own, and a dry run that changes nothing.

use std::fs;

use super::*;

#[test]
fn forget_without_options_applies_the_inventory_policy_of_the_hosts_group() {
    let tree = crate::common::Tree::new(
        "[hosts.localhost]\naddress = \"localhost\"\ngroups = [\"local\"]\n\
         [groups.local]\nbackup = { keep_last = 2, keep_tags = [\"pre-upgrade\"] }\n",
        "",
    );
    let source = tree.dir.path().join("src");
    fs::create_dir_all(&source).expect("mkdir");
    let src = source.to_str().expect("utf-8");
    for n in 0..4 {
        fs::write(source.join("file"), format!("version {n}")).expect("write");
        let tag = if n == 0 { "pre-upgrade" } else { "nightly" };
        let out = tree.run(&["backup", src, "--tag", tag]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let dry = json(&tree.run(&["forget", "--dry-run", "--json"]));
    let kept: Vec<bool> = dry
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["keep"].as_bool().expect("keep"))
        .collect();
    assert_eq!(
        kept,
        [true, false, true, true],
        "the tagged one, and the last 2: {dry}"
    );
    let done = tree.run(&["forget"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let left = json(&tree.run(&["snapshots", "--json"]));
    assert_eq!(left.as_array().map(Vec::len), Some(3));
}

#[test]
fn forget_keeps_what_the_policy_says_and_dry_run_changes_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("src");
    fs::create_dir_all(&source).expect("mkdir");
    let src = source.to_str().expect("utf-8");
    let mut ids = Vec::new();
    for (n, tag) in ["", "pre-upgrade", "", ""].iter().enumerate() {
        fs::write(source.join("file"), format!("version {n}")).expect("write");
        let mut args = vec!["backup", src, "--json"];
        if !tag.is_empty() {
            args.extend(["--tag", tag]);
        }
        ids.push(
            json(&ns(&data, &args))["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }

    // Without options, the inventory's policy applies; the embedded
    // inventory has none, so everything is kept, and it says why.
    let none = ns(&data, &["forget", "--json"]);
    let rows = json(&none);
    assert!(
        rows.as_array()
            .expect("rows")
            .iter()
            .all(|r| r["keep"] == true
                && r["reasons"][0] == "no retention policy for host localhost"),
        "{rows}"
    );
    assert!(stderr(&none).contains("no retention policy for host localhost"));

    let policy = [
        "forget",
        "--keep-last",
        "2",
        "--keep-tag",
        "pre-upgrade",
        "--json",
    ];
    let mut dry: Vec<&str> = policy.to_vec();
    dry.push("--dry-run");
    let planned = json(&ns(&data, &dry));
    let verdict = |id: &str| {
        planned
            .as_array()
            .expect("array")
            .iter()
            .find(|d| d["id"] == id)
            .map(|d| (d["keep"].as_bool().expect("bool"), d["reasons"].clone()))
            .expect("decided")
    };
    assert_eq!(verdict(&ids[3]), (true, serde_json::json!(["last 2"])));
    assert_eq!(
        verdict(&ids[1]),
        (true, serde_json::json!(["tagged pre-upgrade"]))
    );
    assert_eq!(verdict(&ids[0]), (false, serde_json::json!([])));
    let still = json(&ns(&data, &["snapshots", "--json"]));
    assert_eq!(
        still.as_array().map(Vec::len),
        Some(4),
        "a dry run forgets nothing"
    );

    json(&ns(&data, &policy));
    let left = json(&ns(&data, &["snapshots", "--json"]));
    let mut left: Vec<&str> = left
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    left.sort_unstable();
    let mut expected = vec![ids[1].as_str(), ids[2].as_str(), ids[3].as_str()];
    expected.sort_unstable();
    assert_eq!(left, expected);
    let check = json(&ns(&data, &["store", "check", "--json"]));
    assert_eq!(check["ok"], true);
}
