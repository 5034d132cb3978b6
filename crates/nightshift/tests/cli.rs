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
mod fleet;
mod refusal;
mod report;
mod restore;
mod run;
mod ssh;
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
