//! `exec` and `hosts trust` against OpenSSH's sshd on loopback.

use super::common::{Tree, stderr, stdout};
use nightshift_testbed::Sshd;

fn inventory(servers: &[(&str, &Sshd)]) -> String {
    servers
        .iter()
        .map(|(name, s)| {
            format!(
                "[hosts.{name}]\naddress = \"{}\"\nport = {}\nuser = \"{}\"\nidentity = \"{}\"\ngroups = [\"loop\"]\n",
                s.addr().ip(),
                s.addr().port(),
                s.user(),
                s.client_key().display()
            )
        })
        .collect()
}

/// `loop1` as [`one_host`] gives it, and `here`: this machine through
/// the local transport.
fn one_host_and_localhost() -> (Sshd, Tree, tempfile::TempDir) {
    let sshd = Sshd::start().expect("sshd");
    let known = std::fs::read_to_string(sshd.known_hosts()).expect("known_hosts");
    let inventory = format!(
        "{}[hosts.here]\naddress = \"localhost\"\n",
        inventory(&[("loop1", &sshd)])
    );
    let tree = Tree::new(&inventory, &known);
    (sshd, tree, tempfile::tempdir().expect("tempdir"))
}

/// One loopback host, `loop1`, and a scratch directory.
fn one_host() -> (Sshd, Tree, tempfile::TempDir) {
    let sshd = Sshd::start().expect("sshd");
    let known = std::fs::read_to_string(sshd.known_hosts()).expect("known_hosts");
    let tree = Tree::new(&inventory(&[("loop1", &sshd)]), &known);
    (sshd, tree, tempfile::tempdir().expect("tempdir"))
}

/// A tree whose placing script (one line per entry, names quoted) is
/// larger than the host's pipe and the SSH channel's window together,
/// restored into a directory that does not exist yet: the host's check
/// learns at its first line that there is nothing in the way and ends
/// without reading the rest, and that must not fail the restore.
#[test]
fn a_large_restore_into_a_new_directory_lands_whole() {
    let (_sshd, tree, work) = one_host();
    let site = work.path().join("many");
    let long = "n".repeat(200);
    for dir in 0..8 {
        let dir = site.join(format!("d{dir}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for file in 0..1000 {
            std::fs::write(dir.join(format!("{file:04}-{long}")), file.to_string()).expect("write");
        }
    }
    let src = site.to_str().expect("utf-8");
    let saved = tree.run(&["backup", src]);
    assert!(saved.status.success(), "{}", stderr(&saved));

    let to = work.path().join("not/yet/there");
    let target = format!("loop1:{}", to.display());
    let out = tree.run(&["restore", &format!("latest:{src}"), "--to", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "8000 files, 22.58 KiB restored to {target}, all verified"
        )),
        "{}",
        stdout(&out)
    );
    let landed = to.join("many/d7").join(format!("0999-{long}"));
    assert_eq!(std::fs::read_to_string(landed).expect("restored"), "999");
    let count = std::fs::read_dir(to.join("many/d3")).expect("dir").count();
    assert_eq!(count, 1000);
}

#[test]
fn a_restore_over_ssh_lands_verified_and_never_overwrites_unasked() {
    use std::os::unix::fs::PermissionsExt;
    let (_sshd, tree, work) = one_host();
    let site = work.path().join("site");
    std::fs::create_dir_all(site.join("conf.d")).expect("mkdir");
    std::fs::write(site.join("conf.d/app.conf"), "listen 80;\n").expect("write");
    std::fs::set_permissions(
        site.join("conf.d/app.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    std::fs::write(site.join("index.html"), "<h1>hi</h1>\n").expect("write");
    std::os::unix::fs::symlink("index.html", site.join("home.html")).expect("symlink");
    let src = site.to_str().expect("utf-8");
    let saved = tree.run(&["backup", src]);
    assert!(saved.status.success(), "{}", stderr(&saved));

    let to = work.path().join("restored");
    let target = format!("loop1:{}", to.display());
    let what = format!("latest:{src}");
    let out = tree.run(&["restore", &what, "--to", &target, "--as", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "2 files, 23 B restored to {target}, all verified (SHA-256 on the target)"
        )),
        "{}",
        stdout(&out)
    );
    let landed = to.join("site");
    assert_eq!(
        std::fs::read_to_string(landed.join("conf.d/app.conf")).expect("restored"),
        "listen 80;\n"
    );
    let mode = std::fs::metadata(landed.join("conf.d/app.conf"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_link(landed.join("home.html")).expect("a symlink"),
        std::path::Path::new("index.html")
    );

    // Again: the files are there, so nothing is written.
    std::fs::write(landed.join("index.html"), "changed\n").expect("write");
    let again = tree.run(&["restore", &what, "--to", &target]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("files already exist under loop1:"),
        "{}",
        stderr(&again)
    );
    assert!(
        stderr(&again).contains("add --overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(landed.join("index.html")).expect("kept"),
        "changed\n"
    );
    let dry = tree.run(&["restore", &what, "--to", &target, "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("would restore 5 entries (2 files, 23 B) of snapshot"),
        "{}",
        stderr(&dry)
    );
    let forced = tree.run(&["restore", &what, "--to", &target, "--overwrite"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        std::fs::read_to_string(landed.join("index.html")).expect("restored"),
        "<h1>hi</h1>\n"
    );

    // Every restore is on the host's record, refused ones too.
    let history = tree.run(&["history", "loop1", "--json"]);
    assert!(history.status.success(), "{}", stderr(&history));
    let events: serde_json::Value = serde_json::from_slice(&history.stdout).expect("JSON");
    let restores: Vec<&serde_json::Value> = events
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["kind"] == "restore")
        .collect();
    assert_eq!(restores.len(), 3, "{events}");
    let outcomes: Vec<&str> = restores
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok, verified all",
            "failed, verified none",
            "ok, verified all"
        ]
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let audit = runtime.block_on(async {
        let path = tree
            .dir
            .path()
            .join("data")
            .join(nightshift_catalog::CATALOG_FILE);
        let catalog = nightshift_catalog::Catalog::open(&path)
            .await
            .expect("catalog");
        catalog.audit_entries(10).await.expect("audit")
    });
    let restores: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.action == "restore")
        .map(|a| (a.actor.as_str(), a.outcome.as_str()))
        .collect();
    let me = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    assert_eq!(
        restores,
        [
            (me.as_str(), "ok"),
            (me.as_str(), "failed"),
            ("alice", "ok")
        ],
        "newest first; --as names the first"
    );
}

/// Names of any bytes but NUL and `/`: what a restore must write,
/// check and verify exactly as they are.
const ODD: [&[u8]; 6] = [
    b"two\nlines",
    b"back\\slash",
    b"-dash *star",
    b"tab\there",
    b"caf\xe9 latin-1",
    b"cr\rand\x1b[31m",
];

#[test]
fn odd_names_verify_and_a_linked_directory_at_the_target_is_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let (_sshd, tree, work) = one_host_and_localhost();
    let site = work.path().join("site");
    for (i, name) in ODD.iter().enumerate() {
        let dir = site.join(OsStr::from_bytes(name));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(OsStr::from_bytes(name)), format!("{i}\n")).expect("write");
    }
    let src = site.to_str().expect("utf-8");
    let saved = tree.run(&["backup", src]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let what = format!("latest:{src}");

    for host in ["loop1", "here"] {
        let to = work.path().join(format!("restored-{host}"));
        let target = format!("{host}:{}", to.display());
        let out = tree.run(&["restore", &what, "--to", &target]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("6 files, 12 B restored to {host}:"))
                && stdout(&out).contains("all verified"),
            "{}",
            stdout(&out)
        );
        for (i, name) in ODD.iter().enumerate() {
            let name = OsStr::from_bytes(name);
            let got =
                std::fs::read_to_string(to.join("site").join(name).join(name)).expect("restored");
            assert_eq!(got, format!("{i}\n"), "{name:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&to)
            .expect("target")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers,
            [OsStr::new("site")],
            "no staging directory is left"
        );
    }

    // Someone left links where the snapshot has directories, one for
    // each odd name: writing through any would land outside the target.
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let linked_to = work.path().join("linked");
    std::fs::create_dir_all(linked_to.join("site")).expect("mkdir");
    for name in ODD {
        std::os::unix::fs::symlink(
            &outside,
            linked_to.join("site").join(OsStr::from_bytes(name)),
        )
        .expect("symlink");
    }
    for host in ["loop1", "here"] {
        let target = format!("{host}:{}", linked_to.display());
        for extra in [None, Some("--overwrite")] {
            let mut argv = vec!["restore", what.as_str(), "--to", target.as_str()];
            argv.extend(extra);
            let refused = tree.run(&argv);
            assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
            assert!(
                stderr(&refused).contains(&format!("under {host}:"))
                    && stderr(&refused)
                        .contains("are a symbolic link where the snapshot has a directory")
                    && stderr(&refused).contains("site/tab\\there"),
                "{}",
                stderr(&refused)
            );
            assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
        }
    }

    // The same refusal for a restore on the controller itself.
    let local = tree.run(&["restore", &what, "--to", linked_to.to_str().expect("utf-8")]);
    assert_eq!(local.status.code(), Some(1), "{}", stderr(&local));
    assert!(
        stderr(&local).contains("a symbolic link where the snapshot has a directory"),
        "{}",
        stderr(&local)
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
}

/// A snapshot restored onto a host other than its own: setuid bits
/// and device nodes are dropped, and said to be, unless
/// `--keep-privileges`.
#[test]
fn a_restore_onto_another_host_drops_setuid_bits_and_device_nodes_unless_kept() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if !nix::unistd::geteuid().is_root() {
        assert!(!nightshift_testbed::in_ci(), "CI runs the suite as root");
        eprintln!("not root: device nodes cannot be made; skipped");
        return;
    }
    let (_sshd, tree, work) = one_host();
    let site = work.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("tool"), "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(site.join("tool"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    nix::sys::stat::mknod(
        &site.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    let src = site.to_str().expect("utf-8");
    let saved = tree.run(&["backup", src]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let what = format!("latest:{src}");

    let to = work.path().join("plain");
    let target = format!("loop1:{}", to.display());
    let out = tree.run(&["restore", &what, "--to", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "dropped: setuid/setgid bits of 1 file, 1 device node (use --keep-privileges to keep them)"
        ),
        "{}",
        stdout(&out)
    );
    let mode = std::fs::metadata(to.join("site/tool"))
        .expect("tool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert!(!to.join("site/null").exists(), "no device node");

    let to = work.path().join("kept");
    let target = format!("loop1:{}", to.display());
    let out = tree.run(&["restore", &what, "--to", &target, "--keep-privileges"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("dropped:"), "{}", stdout(&out));
    let mode = std::fs::metadata(to.join("site/tool"))
        .expect("tool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
    let null = std::fs::symlink_metadata(to.join("site/null")).expect("device");
    assert!(null.file_type().is_char_device());
}

#[test]
fn exec_prefixes_lines_and_fails_when_a_host_fails() {
    let (a, b) = (Sshd::start().expect("sshd"), Sshd::start().expect("sshd"));
    let known = format!(
        "{}{}",
        std::fs::read_to_string(a.known_hosts()).expect("a"),
        std::fs::read_to_string(b.known_hosts()).expect("b")
    );
    let tree = Tree::new(&inventory(&[("alpha", &a), ("beta", &b)]), &known);
    let ok = tree.run(&["exec", "group:loop", "--", "echo", "hello"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let mut lines: Vec<String> = stdout(&ok).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["alpha  hello", "beta   hello"]);
    assert!(
        stderr(&ok)
            .lines()
            .any(|line| line.starts_with("2 hosts: 2 ok in ")),
        "{}",
        stderr(&ok)
    );

    let failing = tree.run(&[
        "exec",
        "alpha,beta",
        "--",
        "test",
        "$(hostname)",
        "=",
        "never",
    ]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        stderr(&failing).contains("2 hosts: 0 ok, 2 failed (exit non-zero 2)"),
        "{}",
        stderr(&failing)
    );

    let json = tree.run(&["exec", "alpha", "--json", "--", "exit", "3"]);
    let doc: serde_json::Value = serde_json::from_str(stdout(&json).trim()).expect("JSON line");
    assert_eq!(
        (
            doc["host"].as_str(),
            doc["exit_code"].as_i64(),
            doc["ok"].as_bool()
        ),
        (Some("alpha"), Some(3), Some(false))
    );
}

#[test]
fn an_unknown_host_is_refused_until_trusted() {
    let sshd = Sshd::start().expect("sshd");
    let tree = Tree::new(&inventory(&[("gamma", &sshd)]), "");
    let refused = tree.run(&["exec", "gamma", "--", "true"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("nightshift hosts trust gamma"),
        "{}",
        stderr(&refused)
    );

    // Without a terminal and without --yes, nothing is recorded.
    let unconfirmed = tree.run(&["hosts", "trust", "gamma"]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert!(tree.known_hosts().is_empty());

    let trusted = tree.run(&["hosts", "trust", "--yes", "gamma"]);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let key = sshd.host_public_key().expect("key");
    let blob = key.split_whitespace().nth(1).expect("blob");
    assert!(tree.known_hosts().contains(blob), "{}", tree.known_hosts());
    assert!(
        stdout(&trusted).contains("ED25519 SHA256:"),
        "{}",
        stdout(&trusted)
    );
    assert!(tree.run(&["exec", "gamma", "--", "true"]).status.success());
}
