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

/// `nightshift ARGS` with `data` as its data dir, in UTC, no stdin.
pub fn in_data_dir(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command_in(data, args, env)
        .output()
        .expect("nightshift runs")
}

/// The command [`in_data_dir`] runs, to start without waiting.
pub fn command_in(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nightshift"));
    command
        .args(args)
        .env("NIGHTSHIFT_DATA_DIR", data)
        .env("TZ", "UTC")
        .env_remove("NIGHTSHIFT_LOG")
        .env_remove("NIGHTSHIFT_PASSPHRASE")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    command
}

/// The JSON a successful command printed.
pub fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A plan tree in a temporary directory: a config, an inventory and a data
/// dir, for running `nightshift` against real hosts.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    /// `inventory` is the inventory's TOML; `known_hosts` becomes the data
    /// dir's known_hosts (empty for none).
    pub fn new(inventory: &str, known_hosts: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("nightshift.toml"),
            "inventory = \"inventory.toml\"\n",
        )
        .expect("config");
        std::fs::write(dir.path().join("inventory.toml"), inventory).expect("inventory");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        std::fs::write(dir.path().join("data/known_hosts"), known_hosts).expect("known_hosts");
        Self { dir }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nightshift"))
            .arg("--config")
            .arg(self.dir.path().join("nightshift.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("nightshift runs")
    }

    pub fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/known_hosts")).unwrap_or_default()
    }
}

/// An inventory of every host of `fleet`, in group `fleet`, reached as
/// the fleet's admin user with its key.
pub fn fleet_inventory(fleet: &nightshift_testbed::Fleet) -> String {
    let m = fleet.manifest();
    fleet
        .hosts()
        .iter()
        .map(|h| {
            format!(
                "[hosts.{}]\naddress = \"{}\"\nuser = \"{}\"\nidentity = \"{}\"\ngroups = [\"fleet\"]\n",
                h.name,
                h.address,
                m.user,
                m.identity.display()
            )
        })
        .collect()
}
