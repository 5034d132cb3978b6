//! `nightshift backup`, `snapshots`, `ls`, `restore` and `store` on a real
//! store in a temporary data dir.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod faults;
mod forget;
mod keys;

use crate::common::{in_data_dir, json, stderr, stdout};

fn ns(data: &Path, args: &[&str]) -> Output {
    ns_env(data, args, &[])
}

fn ns_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    in_data_dir(data, args, env)
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
    let status = json(&ns(&data, &["store", "check", "--status", "--json"]));
    assert_eq!(status["unverified_packs"], 0, "{status}");
    assert!(status["oldest"].is_string(), "{status}");

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
    for n in 0..16 {
        fs::write(source.join(format!("f{n}")), noise(4 << 20, n)).expect("write");
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
    let locks = data.join("store/locks");
    assert_eq!(
        count_entries(&locks),
        1,
        "the killed backup's lock is left behind"
    );

    let listed = json(&ns(&data, &["snapshots", "--json"]));
    assert_eq!(
        listed,
        serde_json::json!([]),
        "the backup was killed before its snapshot"
    );
    let check = ns(&data, &["store", "check", "--read-data", "--json"]);
    assert!(
        stderr(&check).contains("removed the shared lock of `backup`"),
        "the next command clears the dead process's lock: {}",
        stderr(&check)
    );
    let check = json(&check);
    assert_eq!(check["ok"], true, "{check}");

    let again = json(&ns(&data, &["backup", src, "--json"]));
    assert_eq!(again["summary"]["files"], 16);
    assert_eq!(
        count_entries(&locks),
        0,
        "the new backup released its own lock"
    );
    let target = work.path().join("restored");
    let restore = ns(
        &data,
        &["restore", "latest", "--to", target.to_str().expect("utf-8")],
    );
    assert!(restore.status.success(), "{}", stderr(&restore));
    let landed = target.join(source.strip_prefix("/").expect("absolute"));
    for n in 0..16 {
        let restored = fs::read(landed.join(format!("f{n}"))).expect("restored");
        assert!(restored == noise(4 << 20, n), "f{n} differs after restore");
    }
}

fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
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

#[test]
fn snapshots_are_named_by_host_latest_and_a_local_time() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(&source).expect("mkdir");
    let src = source.to_str().expect("utf-8");
    fs::write(source.join("app.conf"), "first\n").expect("write");
    let first = json(&ns(&data, &["backup", src, "--json"]));
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(source.join("app.conf"), "second\n").expect("write");
    json(&ns(&data, &["backup", src, "--json"]));

    // `in_data_dir` runs in UTC, so the snapshot's time read as a local
    // time names it.
    let time = chrono::DateTime::parse_from_rfc3339(first["time"].as_str().expect("time"))
        .expect("rfc 3339")
        .to_utc()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let at = format!("localhost@{time}:{src}/app.conf");
    let target = work.path().join("restored");
    let out = ns(
        &data,
        &["restore", &at, "--to", target.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(target.join("app.conf")).expect("restored"),
        "first\n"
    );
    let ls = ns(&data, &["ls", &format!("localhost/latest:{src}")]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert!(stdout(&ls).contains("/app.conf"), "{}", stdout(&ls));
    let out = ns(&data, &["ls", "localhost@2001-01-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("no snapshot matches `localhost@2001-01-01`: the first of that host is from"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn find_lists_every_version_and_diff_what_changed() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(source.join("conf.d")).expect("mkdir");
    fs::write(source.join("conf.d/app.conf"), "listen 80;\n").expect("write");
    fs::write(source.join("conf.d/old.conf"), "bye\n").expect("write");
    let src = source.to_str().expect("utf-8");
    let first = json(&ns(&data, &["backup", src, "--json"]));
    fs::write(source.join("conf.d/app.conf"), "listen 8080;\n").expect("write");
    fs::remove_file(source.join("conf.d/old.conf")).expect("rm");
    fs::write(source.join("conf.d/new.conf"), "hello\n").expect("write");
    let second = json(&ns(&data, &["backup", src, "--json"]));
    let (a, b) = (
        first["id"].as_str().expect("id"),
        second["id"].as_str().expect("id"),
    );

    let found = json(&ns(&data, &["find", "app.conf", "--json"]));
    let versions = found.as_array().expect("list");
    assert_eq!(versions.len(), 2, "{found}");
    assert_eq!(versions[0]["path"], format!("{src}/conf.d/app.conf"));
    assert_eq!(versions[0]["size"], 11);
    assert_eq!(versions[0]["snapshots"], serde_json::json!([a]));
    assert_eq!(versions[1]["size"], 13);
    assert_eq!(versions[1]["snapshots"], serde_json::json!([b]));
    let text = ns(&data, &["find", "*.conf"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).contains("4 versions of 3 paths in 2 snapshots"),
        "{}",
        stdout(&text)
    );
    let by_path = json(&ns(&data, &["find", &format!("{src}/conf.d/*"), "--json"]));
    assert_eq!(by_path.as_array().map(Vec::len), Some(4), "{by_path}");
    let none = ns(&data, &["find", "nothing-like-it"]);
    assert_eq!(none.status.code(), Some(1));

    let out = ns(&data, &["diff", &a[..8], "latest", src]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!("M {src}/conf.d/app.conf (11 B → 13 B)").as_str(),
            format!("+ {src}/conf.d/new.conf (6 B)").as_str(),
            format!("- {src}/conf.d/old.conf (4 B)").as_str(),
        ]
    );
    assert!(
        lines[3].starts_with("1 added, 1 removed, 1 changed · "),
        "{}",
        lines[3]
    );
    let same = json(&ns(&data, &["diff", "latest", "latest", "--json"]));
    assert_eq!(same, serde_json::json!([]));
}

#[test]
fn ls_shows_one_level_unless_recursive_and_details_when_long() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(source.join("conf.d")).expect("mkdir");
    fs::write(source.join("conf.d/app.conf"), "listen 80;\n").expect("write");
    fs::write(source.join("index.html"), "hi\n").expect("write");
    let src = source.to_str().expect("utf-8");
    json(&ns(&data, &["backup", src, "--json"]));
    let listed = |args: &[&str]| {
        let out = ns(&data, args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let what = format!("latest:{src}");
    assert_eq!(
        listed(&["ls", &what]),
        format!("{src}/conf.d/\n{src}/index.html\n")
    );
    assert_eq!(
        listed(&["ls", &what, "--recursive"]),
        format!("{src}/conf.d/\n{src}/conf.d/app.conf\n{src}/index.html\n")
    );
    let long = listed(&["ls", &what, "-l"]);
    let line = long.lines().nth(1).expect("two lines");
    assert!(line.starts_with("-0644 "), "{line}");
    assert!(
        line.contains(" 3 ") && line.ends_with(&format!("{src}/index.html")),
        "{line}"
    );
}

#[test]
fn a_local_restore_keeps_existing_files_unless_told_to_overwrite() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("app.conf"), "listen 80;\n").expect("write");
    let src = source.to_str().expect("utf-8");
    json(&ns(&data, &["backup", src, "--json"]));
    let target = work.path().join("restored");
    let to = target.to_str().expect("utf-8");
    let what = format!("latest:{src}");
    assert!(ns(&data, &["restore", &what, "--to", to]).status.success());
    fs::write(target.join("site/app.conf"), "mine\n").expect("write");
    let again = ns(&data, &["restore", &what, "--to", to]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("1 files already exist under")
            && stderr(&again).contains("site/app.conf"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        fs::read_to_string(target.join("site/app.conf")).expect("kept"),
        "mine\n"
    );
    let dry = ns(&data, &["restore", &what, "--to", to, "--dry-run"]);
    assert!(
        stderr(&dry).contains("1 of them exist there"),
        "{}",
        stderr(&dry)
    );
    let forced = ns(&data, &["restore", &what, "--to", to, "--overwrite"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        fs::read_to_string(target.join("site/app.conf")).expect("restored"),
        "listen 80;\n"
    );
}

/// Whether this test may make device nodes; outside CI, a test not run as
/// root says what it skips. CI (`CI=true`) runs the tests as root, so there
/// not being root fails.
fn root_or_note(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI runs the tests as root: {what} needs it"
    );
    eprintln!("note: not root, so {what} is not tested");
    false
}

#[test]
fn a_restore_to_the_controller_drops_setuid_bits_and_device_nodes_unless_kept() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("helper"), "#!/bin/sh\n").expect("write");
    fs::set_permissions(source.join("helper"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    let root = root_or_note("a device node in a restore");
    if root {
        nix::sys::stat::mknod(
            &source.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod");
    }
    let src = source.to_str().expect("utf-8");
    json(&ns(&data, &["backup", src, "--json"]));
    let what = format!("latest:{src}");

    let plain = work.path().join("plain");
    let out = ns(
        &data,
        &["restore", &what, "--to", plain.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = if root {
        "dropped: setuid/setgid bits of 1 file, 1 device node (use --keep-privileges to keep them)\n"
    } else {
        "dropped: setuid/setgid bits of 1 file (use --keep-privileges to keep them)\n"
    };
    assert!(stdout(&out).ends_with(said), "{}", stdout(&out));
    let mode = fs::metadata(plain.join("site/helper"))
        .expect("restored")
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "no setuid bit");
    assert!(
        fs::symlink_metadata(plain.join("site/null")).is_err(),
        "no device node"
    );
    let again = work.path().join("again");
    let summary = json(&ns(
        &data,
        &[
            "restore",
            &what,
            "--to",
            again.to_str().expect("utf-8"),
            "--json",
        ],
    ));
    assert_eq!(summary["dropped"]["setid"], 1, "{summary}");
    assert_eq!(summary["dropped"]["devices"], u64::from(root), "{summary}");
    assert_eq!(summary["dropped"]["owners"], false, "{summary}");

    let kept = work.path().join("kept");
    let out = ns(
        &data,
        &[
            "restore",
            &what,
            "--to",
            kept.to_str().expect("utf-8"),
            "--keep-privileges",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("dropped"), "{}", stdout(&out));
    let mode = fs::metadata(kept.join("site/helper"))
        .expect("restored")
        .mode();
    assert_eq!(mode & 0o7777, 0o4755, "the setuid bit, as recorded");
    if root {
        let null = fs::symlink_metadata(kept.join("site/null")).expect("a device node");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    }
}

#[test]
fn a_link_where_a_directory_goes_is_refused_whatever_bytes_name_it() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let names: [&[u8]; 4] = [b"new\nline", b"tab\there", b"\xff", b"-dash"];
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    for name in names {
        let dir = source.join(OsStr::from_bytes(name));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("app.conf"), "listen 80;\n").expect("write");
    }
    fs::write(source.join("index.html"), "hi\n").expect("write");
    let src = source.to_str().expect("utf-8");
    json(&ns(&data, &["backup", src, "--json"]));
    let what = format!("latest:{src}");

    let outside = work.path().join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    let target = work.path().join("restored");
    fs::create_dir_all(target.join("site")).expect("mkdir");
    for name in names {
        std::os::unix::fs::symlink(&outside, target.join("site").join(OsStr::from_bytes(name)))
            .expect("symlink");
    }
    let to = target.to_str().expect("utf-8");
    for extra in [None, Some("--overwrite")] {
        let mut argv = vec!["restore", what.as_str(), "--to", to];
        argv.extend(extra);
        let refused = ns(&data, &argv);
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        let said = stderr(&refused);
        assert!(
            said.contains("are a symbolic link where the snapshot has a directory")
                && said.contains("nothing was written"),
            "{said}"
        );
        for name in [
            "site/new\nline",
            "site/tab\there",
            "site/\u{fffd}",
            "site/-dash",
        ] {
            assert!(said.contains(name), "{name:?} named: {said}");
        }
        assert_eq!(fs::read_dir(&outside).expect("outside").count(), 0);
        assert!(
            !target.join("site/index.html").exists(),
            "nothing was written"
        );
    }
}
