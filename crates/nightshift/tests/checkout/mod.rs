//! A fresh clone as a new user meets it: the README's quick-start commands,
//! run with no flags in a copy of exactly the files git tracks (so
//! uncommitted edits count, and untracked files, `target/` and
//! `.nightshift/` do not).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{repo_root, stderr, stdout};

/// The quick start's commands, in the README's order; the test runs each
/// one. Change the README and this list fails the test until the test runs
/// what the README says.
const QUICK_START: &[&str] = &[
    "cargo run --release --locked -- run quickstart",
    "nightshift check",
    "nightshift schedule next",
    "nightshift daemon &",
    "nightshift status",
    "kill %1",
];

/// Quick-start lines the test does not run: it calls the built binary by its
/// path, and it is itself part of the test suite.
const NOT_RUN: &[&str] = &["export PATH=\"$PWD/target/release:$PATH\"", "./tests/run"];

#[test]
fn the_readme_quick_start_works_in_a_clean_clone_with_no_flags() {
    assert_eq!(
        readme_quick_start(),
        QUICK_START,
        "the README's quick start changed: make this test run what it says"
    );
    let checkout = Checkout::new();

    // cargo run --release --locked -- run quickstart
    let out = checkout.run(&["run", "quickstart"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    assert!(
        stdout(&out).contains("nightshift snapshots"),
        "it ends with the commands to try next: {}",
        stdout(&out)
    );
    assert!(
        checkout.path().join(".nightshift/store.key").is_file(),
        "the store is made under ./.nightshift with a generated key"
    );

    // nightshift check
    let out = checkout.run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The repository's config and the example inventory are read too.
    let files = checkout.toml_files("playbooks").len() + checkout.toml_files("schedules").len() + 2;
    assert_eq!(
        stderr(&out),
        format!("{files} files checked, no problems\n")
    );

    // nightshift schedule next
    let out = checkout.run(&["schedule", "next"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let playbooks = checkout.playbook_names();
    let listed = stdout(&out);
    let runs: Vec<&str> = listed.lines().skip(1).collect();
    assert!(
        !runs.is_empty() && !listed.contains("never runs"),
        "{listed}"
    );
    for run in runs {
        assert!(
            run.split_whitespace()
                .any(|word| playbooks.iter().any(|p| p == word)),
            "a run of a shipped playbook ({playbooks:?}): {run}"
        );
    }

    // nightshift daemon &; nightshift status; kill %1
    let mut daemon = checkout.start_daemon();
    let pid = daemon.child.id();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let out = checkout.run(&["status"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = stdout(&out);
        if said.starts_with("daemon running") && said.contains(&format!("pid {pid} ")) {
            break;
        }
        assert!(
            Instant::now() < until,
            "`nightshift status` never saw the daemon: {}\nits log:\n{}",
            stdout(&out),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = daemon.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}; its log:\n{}", daemon.log());
}

/// The command lines of the shell blocks under the README's "Quick start",
/// comments and the lines in [`NOT_RUN`] left out.
fn readme_quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start\n"))
        .expect("a `## Quick start` section");
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|block| block.strip_prefix("sh\n"))
        .flat_map(str::lines)
        .map(|line| line.split(" #").next().unwrap_or(line).trim().to_string())
        .filter(|line| !line.is_empty() && !NOT_RUN.contains(&line.as_str()))
        .collect()
}

/// A copy of the working tree's tracked files in a temporary directory.
struct Checkout {
    dir: tempfile::TempDir,
    /// The daemon's standard error, outside the checkout.
    logs: tempfile::TempDir,
}

impl Checkout {
    /// Copies every file `git ls-files` lists, as it is in the working tree;
    /// a tracked file deleted there is left out, as a commit would.
    fn new() -> Self {
        let root = repo_root().canonicalize().expect("repository root");
        let listed = Command::new("git")
            .arg("-c")
            .arg(format!("safe.directory={}", root.display()))
            .args(["ls-files", "-z"])
            .current_dir(&root)
            .output()
            .unwrap_or_else(|err| {
                panic!("the clean-clone test needs git to list the tracked files: {err}")
            });
        assert!(
            listed.status.success(),
            "the clean-clone test copies the files git tracks, so it runs in a git clone; `git ls-files` said: {}",
            stderr(&listed)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut copied = 0;
        for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = Path::new(std::str::from_utf8(name).expect("a UTF-8 path"));
            let (from, to) = (root.join(name), dir.path().join(name));
            let Ok(meta) = from.symlink_metadata() else {
                continue;
            };
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            if meta.is_symlink() {
                let target = std::fs::read_link(&from).expect("readlink");
                std::os::unix::fs::symlink(target, &to).expect("symlink");
            } else {
                std::fs::copy(&from, &to)
                    .unwrap_or_else(|err| panic!("copying {}: {err}", name.display()));
            }
            copied += 1;
        }
        assert!(
            dir.path().join("nightshift.toml").is_file(),
            "of the {copied} files git tracks, none is nightshift.toml: is it added?"
        );
        Self {
            dir,
            logs: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `nightshift ARGS` in the checkout, with no flags and none of
    /// nightshift's variables set.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nightshift"));
        command.args(args).current_dir(self.path());
        for name in [
            "NIGHTSHIFT_DATA_DIR",
            "NIGHTSHIFT_LOG",
            "NIGHTSHIFT_PASSPHRASE",
            "NIGHTSHIFT_SSH_PASSPHRASE",
        ] {
            command.env_remove(name);
        }
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("nightshift runs")
    }

    fn start_daemon(&self) -> Daemon {
        let log = self.logs.path().join("daemon.log");
        let child = self
            .command(&["daemon"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the daemon starts");
        Daemon { child, log }
    }

    fn toml_files(&self, dir: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.path().join(dir))
            .expect("directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect()
    }

    /// The `name` of every shipped playbook.
    fn playbook_names(&self) -> Vec<String> {
        self.toml_files("playbooks")
            .iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(p).expect("playbook");
                let line = text.lines().find(|l| l.starts_with("name = "))?;
                Some(
                    line.trim_start_matches("name = ")
                        .trim_matches('"')
                        .to_string(),
                )
            })
            .collect()
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the daemon did not stop on SIGTERM; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
