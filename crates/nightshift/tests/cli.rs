//! The `nightshift` command as users meet it: help, exit codes, and the text
//! of its messages (snapshots).

mod common;

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

#[test]
fn shipped_playbooks_and_schedules_pass_check() {
    let output = nightshift(&["check"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let files = std::fs::read_dir(common::repo_root().join("playbooks"))
        .expect("playbooks/")
        .count()
        + std::fs::read_dir(common::repo_root().join("schedules"))
            .expect("schedules/")
            .count();
    assert_eq!(
        stderr(&output),
        format!("{files} files checked, no problems\n")
    );
}

#[test]
fn check_reports_every_broken_file_in_one_pass() {
    let output = nightshift(&["check", "tests/broken"]);
    assert_eq!(output.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&output));
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
fn subcommands_not_yet_built_fail_plainly() {
    let output = nightshift(&["run", "playbooks/quickstart.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nightshift run is not yet available"));
}
