//! `nightshift backup`, `snapshots`, `ls`, `restore` and `store` on a real
//! store in a temporary data dir.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{stderr, stdout};

fn ns(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(args)
        .env("NIGHTSHIFT_DATA_DIR", data)
        .env_remove("NIGHTSHIFT_LOG")
        .output()
        .expect("nightshift runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// Bytes that do not compress, from a seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn backup_list_restore_and_check_round_trip() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(source.join("conf.d")).expect("mkdir");
    fs::write(source.join("conf.d/app.conf"), "listen 80;\n").expect("write");
    fs::write(source.join("blob.bin"), noise(3 << 20, 1)).expect("write");
    let src = source.to_str().expect("utf-8");

    let first = json(&ns(&data, &["backup", src, "--tag", "nightly", "--json"]));
    assert_eq!(first["summary"]["files"], 2);
    assert_eq!(first["tags"], serde_json::json!(["nightly"]));
    let second = json(&ns(&data, &["backup", src, "--json"]));
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["summary"]["bytes_read"], 0);

    let listed = json(&ns(&data, &["snapshots", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[0]["paths"], serde_json::json!([src]));

    let ls = ns(&data, &["ls", "latest", &format!("{src}/conf.d")]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert!(stdout(&ls).contains("/conf.d/app.conf"), "{}", stdout(&ls));

    let target = work.path().join("restored");
    let spec = format!("{}:{src}", &first["id"].as_str().expect("id")[..8]);
    let restore = ns(
        &data,
        &["restore", &spec, "--to", target.to_str().expect("utf-8")],
    );
    assert!(restore.status.success(), "{}", stderr(&restore));
    assert!(stdout(&restore).contains("2 files"), "{}", stdout(&restore));
    assert_eq!(
        fs::read(target.join("site/blob.bin")).expect("restored"),
        noise(3 << 20, 1)
    );
    assert_eq!(
        fs::read_to_string(target.join("site/conf.d/app.conf")).expect("restored"),
        "listen 80;\n"
    );

    let check = json(&ns(&data, &["store", "check", "--read-data", "--json"]));
    assert_eq!(check["ok"], true);
    assert!(check["packs_read"].as_u64() > Some(0));

    let tar = ns(
        &data,
        &["restore", &format!("latest:{src}/conf.d"), "--tar", "-"],
    );
    assert!(tar.status.success(), "{}", stderr(&tar));
    let mut listing = Command::new("tar")
        .args(["--list", "--verbose", "--file=-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar runs");
    std::io::Write::write_all(listing.stdin.as_mut().expect("stdin"), &tar.stdout).expect("pipe");
    drop(listing.stdin.take());
    let listing = listing.wait_with_output().expect("tar lists");
    let text = stdout(&listing);
    assert!(listing.status.success());
    assert!(
        text.contains("conf.d/app.conf") && text.contains(" 11 "),
        "{text}"
    );
}

#[test]
fn a_missing_store_and_a_missing_snapshot_say_what_to_do() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let target = work.path().join("t");
    let no_store = ns(
        &data,
        &["restore", "latest", "--to", target.to_str().expect("utf-8")],
    );
    assert_eq!(no_store.status.code(), Some(1));
    let message = stderr(&no_store).replace(data.to_str().expect("utf-8"), "[DATA]");
    insta::assert_snapshot!(message, @"error: no store at [DATA]/store: run `nightshift store init` or make a first backup
");

    json(&ns(
        &data,
        &["backup", work.path().to_str().expect("utf-8"), "--json"],
    ));
    let no_snapshot = ns(&data, &["restore", "ffffffff", "--to", "t"]);
    assert_eq!(no_snapshot.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&no_snapshot), @"error: no snapshot matches `ffffffff`: `nightshift snapshots` lists them
");
}

#[test]
fn a_killed_backup_leaves_no_snapshot_and_a_sound_store() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("big");
    fs::create_dir_all(&source).expect("mkdir");
    for n in 0..24 {
        fs::write(source.join(format!("f{n}")), noise(8 << 20, n)).expect("write");
    }
    let init = ns(&data, &["store", "init", "--pack-size", "1"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let src = source.to_str().expect("utf-8");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["backup", src])
        .env("NIGHTSHIFT_DATA_DIR", &data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backup starts");
    let packs = data.join("store/data");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_files(&packs) < 3 {
        assert!(Instant::now() < deadline, "no pack written within a minute");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");

    let listed = json(&ns(&data, &["snapshots", "--json"]));
    assert_eq!(
        listed,
        serde_json::json!([]),
        "the backup was killed before its snapshot"
    );
    let check = json(&ns(&data, &["store", "check", "--read-data", "--json"]));
    assert_eq!(check["ok"], true, "{check}");

    let again = json(&ns(&data, &["backup", src, "--json"]));
    assert_eq!(again["summary"]["files"], 24);
    let target = work.path().join("restored");
    let restore = ns(
        &data,
        &["restore", "latest", "--to", target.to_str().expect("utf-8")],
    );
    assert!(restore.status.success(), "{}", stderr(&restore));
    let landed = target.join(source.strip_prefix("/").expect("absolute"));
    assert_eq!(
        fs::read(landed.join("f7")).expect("restored"),
        noise(8 << 20, 7)
    );
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| fs::read_dir(e.path()).map_or(0, |d| d.count()))
        .sum()
}
