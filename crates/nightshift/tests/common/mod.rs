//! Runs the real `nightshift` binary from the repository root.

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `nightshift ARGS` run in the repository root with a private data dir.
pub fn nightshift(args: &[&str]) -> Output {
    let data = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(args)
        .current_dir(repo_root())
        .env("NIGHTSHIFT_DATA_DIR", data.path())
        .env_remove("NIGHTSHIFT_LOG")
        .env("COLUMNS", "100")
        .output()
        .expect("nightshift runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
