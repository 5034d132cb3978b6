//! The `nightshift` command as users meet it: help, exit codes, and the text
//! of its messages (snapshots).

#![allow(
    clippy::print_stderr,
    reason = "a test says which of its parts this machine skips"
)]

mod backup;
mod catalog;
mod checkout;
mod common;
mod daemon;
mod refusal;
mod report;
mod restore;
mod run;
mod trust;

use common::{nightshift, stderr, stdout};

#[test]
fn help_lists_every_subcommand() {
    let output = nightshift(&["--help"]);
    assert!(output.status.success());
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn version_names_the_release() {
    let output = nightshift(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("nightshift {}\n", env!("CARGO_PKG_VERSION"))
    );
}

const EXAMPLE_CONFIG: &str = "deploy/nightshift.example.toml";

fn toml_files_in(dir: &str) -> usize {
    std::fs::read_dir(common::repo_root().join(dir))
        .expect("directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count()
}

#[test]
fn shipped_playbooks_schedules_and_inventory_pass_check() {
    let output = nightshift(&["--config", EXAMPLE_CONFIG, "check"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The config and the example inventory are checked too.
    let files = toml_files_in("playbooks") + toml_files_in("schedules") + 2;
    assert_eq!(
        stderr(&output),
        format!("{files} files checked, no problems\n")
    );
}

/// `nightshift schedule next` on the shipped examples from a fixed time;
/// asserts success and returns standard output.
fn schedule_next(from: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "--config",
        EXAMPLE_CONFIG,
        "schedule",
        "next",
        "--from",
        from,
    ];
    args.extend(extra);
    let output = nightshift(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[test]
fn schedule_next_lists_runs_inside_their_windows() {
    insta::assert_snapshot!(schedule_next("2026-12-10T00:00:00Z", &["-n", "6"]));
}

#[test]
fn schedule_next_json_has_local_and_utc_times() {
    let output = schedule_next("2026-12-11T12:00:00Z", &["-n", "1", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&output).expect("JSON");
    let run = &doc["runs"][0];
    // Patch Tuesday 2026-12-08 + 4 days, 02:00 in Berlin.
    assert_eq!(run["playbook"], "web-patch");
    assert_eq!(run["window"], "patch-weekend");
    assert_eq!(run["local"], "2026-12-12T02:00:00+01:00");
    assert_eq!(run["utc"], "2026-12-12T01:00:00Z");
}

#[test]
fn schedule_next_from_a_date_starts_at_its_midnight() {
    let data = tempfile::tempdir().expect("tempdir");
    let from = |when: &str| {
        let args = [
            "--config",
            EXAMPLE_CONFIG,
            "schedule",
            "next",
            "--from",
            when,
        ];
        let output = common::command_in(data.path(), &args, &[])
            .current_dir(common::repo_root())
            .output()
            .expect("nightshift runs");
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(from("2026-12-10"), from("2026-12-10T00:00:00Z"));
}

/// Every flag that takes a time reads the same forms: a bad value is a
/// usage error naming the flag, with one message whichever the command.
#[test]
fn a_bad_time_is_the_same_usage_error_for_every_time_flag() {
    use nightshift_scheduler::moment::MomentError;
    let data = tempfile::tempdir().expect("tempdir");
    let flags: [&[&str]; 4] = [
        &["runs", "--since"],
        &["report", "compliance", "--as-of"],
        &["report", "host", "web1", "--as-of"],
        &["schedule", "next", "--from"],
    ];
    let refusals = [
        ("last tuesday", MomentError::NotATime),
        ("2026-03-29T02:30", MomentError::DaylightGap),
        ("0000-12-31T12:00:00Z", MomentError::OutOfRange),
    ];
    for (bad, why) in refusals {
        for flag in flags {
            let args = [flag, &[bad]].concat();
            let output = common::in_data_dir(data.path(), &args, &[("TZ", "Europe/Berlin")]);
            assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
            let name = flag.last().expect("a flag");
            let said = stderr(&output);
            let (head, message) = said.split_once(">': ").expect("clap's usage error");
            let named = format!("error: invalid value '{bad}' for '{name} <");
            assert!(head.starts_with(&named), "{said}");
            assert!(message.starts_with(&format!("{why}\n")), "{said}");
        }
    }
}

#[test]
fn schedule_next_says_plainly_when_a_schedule_stops_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("playbooks")).expect("mkdir");
    std::fs::create_dir_all(root.join("schedules")).expect("mkdir");
    std::fs::write(
        root.join("playbooks/p.toml"),
        "name = \"p\"\ntargets = [\"localhost\"]\n[[steps]]\nname = \"s\"\ncommand = \"true\"\n",
    )
    .expect("write");
    let schedules = |cron: &str| {
        format!(
            "[[schedule]]\nplaybook = \"p\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nwindow = \"night\"\n\
             [windows.night]\nstart = \"01:00\"\nend = \"05:00\"\n\
             freeze = [{{ from = \"2040-01-01\", to = \"2999-12-31\", reason = \"retired\" }}]\n"
        )
    };
    std::fs::write(root.join("schedules/s.toml"), schedules("0 2 * * *")).expect("write");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
            .args(args)
            .current_dir(root)
            .output()
            .expect("runs")
    };
    // Runs until the freeze that never ends; from then on, none.
    let next = run(&["schedule", "next", "--from", "2041-06-01T00:00:00Z"]);
    assert!(next.status.success(), "{}", stderr(&next));
    assert_eq!(
        stdout(&next),
        "no scheduled runs ahead\nnever runs: p (`0 2 * * *` in window night): \
         the cron expression never fires while the window is open (within 800 days)\n"
    );
    // A schedule that can never fire is a problem in the plan: refused by
    // `schedule next` as by `check`, with the same diagnostic.
    std::fs::write(root.join("schedules/s.toml"), schedules("0 12 * * *")).expect("write");
    let problem = "`0 12 * * *` never fires inside window `night`";
    let next = run(&["schedule", "next"]);
    assert_eq!(next.status.code(), Some(2), "{}", stderr(&next));
    assert!(stderr(&next).contains(problem), "{}", stderr(&next));
    let output = run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(problem), "{}", stderr(&output));
}

/// A config naming the repository's playbooks and schedules by their full
/// paths, without an inventory, as the built-in defaults read them: the
/// repository's own `nightshift.toml` names the example inventory, beside
/// which `tests/broken/inventory.toml` would only be "a second inventory
/// file". Returns the config and the repository's path.
fn no_inventory_config() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = common::repo_root().canonicalize().expect("repository root");
    let config = dir.path().join("nightshift.toml");
    std::fs::write(
        &config,
        format!(
            "playbooks = '{}'\nschedules = '{}'\n",
            root.join("playbooks").display(),
            root.join("schedules").display()
        ),
    )
    .expect("config");
    (
        dir,
        config.display().to_string(),
        root.display().to_string(),
    )
}

#[test]
fn check_reports_every_broken_file_in_one_pass() {
    let (_dir, config, root) = no_inventory_config();
    let output = nightshift(&["--config", &config, "check", "tests/broken"]);
    assert_eq!(output.status.code(), Some(1));
    // Shipped files are named from the repository, as a user there sees them.
    let said = stderr(&output).replace(&format!("{root}/"), "");
    insta::assert_snapshot!(said);
}

#[test]
fn check_json_is_machine_readable() {
    let output = nightshift(&["check", "--json", "tests/broken/playbooks/typo.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let diagnostic = &report["diagnostics"][0];
    assert_eq!(diagnostic["message"], "unknown key `serail`");
    assert_eq!(diagnostic["line"], 4);
    assert_eq!(diagnostic["column"], 1);
    assert_eq!(diagnostic["help"], "did you mean `serial`?");
}

#[test]
fn a_missing_config_file_is_an_error_that_says_what_to_do() {
    let output = nightshift(&["--config", "no-such.toml", "check"]);
    assert_eq!(output.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&output));
}

#[test]
fn a_missing_inventory_names_the_config_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("nightshift.toml"),
        "# fleet\ninventory = \"hosts.toml\"\n",
    )
    .expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .arg("check")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: inventory hosts.toml cannot be read: No such file or directory (os error 2)\n\
         \x20 --> nightshift.toml:2:1\n\
         \x20 |\n\
         2 | inventory = \"hosts.toml\"\n\
         \x20 | ^^^^^^^^^ create it, or remove `inventory` to manage only localhost\n\n\
         1 error in 1 file; 1 file checked\n"
    );
}

mod ssh {
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
                let got = std::fs::read_to_string(to.join("site").join(name).join(name))
                    .expect("restored");
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
}

mod fleet {
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
}

/// The shipped systemd unit is hardened as the README says, and systemd
/// itself finds nothing wrong in it (pointed at this build's binary).
#[test]
fn the_systemd_unit_is_hardened_and_systemd_accepts_it() {
    let unit = std::fs::read_to_string(common::repo_root().join("deploy/nightshift.service"))
        .expect("the unit");
    for line in [
        "User=nightshift",
        "StateDirectory=nightshift",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed; the unit's syntax is not checked");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("nightshift.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/nightshift",
            env!("CARGO_BIN_EXE_nightshift"),
        ),
    )
    .expect("copy");
    let verdict = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&verdict.stderr);
    assert!(verdict.status.success(), "{said}");
    assert!(!said.contains("Unknown"), "{said}");
}
