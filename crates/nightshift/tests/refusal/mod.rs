//! Nothing runs that `nightshift check` refuses: for every broken file under
//! `tests/broken/`, each command that reads the plan refuses it with the
//! same diagnostics `check` prints, exit status 2, no run recorded and no
//! command run on a host.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{command_in, in_data_dir, repo_root, stderr};

/// A valid plan tree with one broken file dropped in where its kind goes.
struct Broken {
    dir: tempfile::TempDir,
    marker: PathBuf,
}

impl Broken {
    fn new(broken: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let marker = root.join("ran");
        std::fs::create_dir_all(root.join("playbooks")).expect("mkdir");
        std::fs::create_dir_all(root.join("schedules")).expect("mkdir");
        std::fs::create_dir_all(root.join("data")).expect("mkdir");
        let probe = format!(
            "name = \"probe\"\ntargets = [\"localhost\"]\n[[steps]]\nname = \"touch\"\ncommand = \"touch {}\"\n",
            marker.display()
        );
        std::fs::write(root.join("playbooks/probe.toml"), probe).expect("playbook");
        std::fs::write(
            root.join("schedules/probe.toml"),
            "[[schedule]]\nplaybook = \"probe\"\ncron = \"* * * * *\"\ntimezone = \"UTC\"\nwindow = \"always\"\n\
             [windows.always]\nstart = \"00:00\"\nend = \"23:59\"\n",
        )
        .expect("schedule");
        let name = broken.file_name().expect("file name");
        let kind = broken.parent().and_then(Path::file_name);
        let inventory = match kind.and_then(|k| k.to_str()) {
            Some("playbooks") | Some("schedules") => {
                let into = root.join(kind.expect("kind")).join(name);
                std::fs::copy(broken, into).expect("copy");
                "[hosts.localhost]\naddress = \"localhost\"\n".to_string()
            }
            _ => {
                let text = std::fs::read_to_string(broken).expect("read");
                format!("{text}\n[hosts.localhost]\naddress = \"localhost\"\n")
            }
        };
        std::fs::write(root.join("inventory.toml"), inventory).expect("inventory");
        std::fs::write(
            root.join("nightshift.toml"),
            "inventory = \"inventory.toml\"\n",
        )
        .expect("config");
        Self { dir, marker }
    }

    fn config(&self) -> String {
        self.dir
            .path()
            .join("nightshift.toml")
            .display()
            .to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn nightshift(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        in_data_dir(&self.data(), &all, &[])
    }

    /// The daemon, given at most `limit` to refuse; one that starts is
    /// killed and the test fails.
    fn daemon(&self, limit: Duration) -> Output {
        let config = self.config();
        let mut child = command_in(&self.data(), &["--config", &config, "daemon"], &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("daemon spawns");
        let until = Instant::now() + limit;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!("the daemon started on a broken plan:\n{}", stderr(&out));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("output")
    }
}

/// Every broken file the repository ships, of every kind.
fn broken_files() -> Vec<PathBuf> {
    let root = repo_root().join("tests/broken");
    let mut files = Vec::new();
    for dir in [root.join("playbooks"), root.join("schedules"), root.clone()] {
        for entry in std::fs::read_dir(&dir).expect("tests/broken") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `file:line:col` of every diagnostic `check --json` reports, in order.
fn places(report: &serde_json::Value) -> Vec<String> {
    report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}",
                d["file"].as_str().expect("file"),
                d["line"],
                d["column"]
            )
        })
        .collect()
}

/// The `--> file:line:col` lines of rendered diagnostics, in order.
fn rendered_places(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> "))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_refuses_what_check_refuses_with_the_same_diagnostics() {
    let files = broken_files();
    assert!(files.len() >= 12, "{files:?}");
    for file in &files {
        let tree = Broken::new(file);
        let check = tree.nightshift(&["check", "--json"]);
        assert_eq!(
            check.status.code(),
            Some(1),
            "{}: {}",
            file.display(),
            stderr(&check)
        );
        let report: serde_json::Value = serde_json::from_slice(&check.stdout).expect("JSON");
        let expected = places(&report);
        assert!(
            !expected.is_empty(),
            "{}: check found nothing",
            file.display()
        );
        let shown = tree.nightshift(&["check"]);
        assert_eq!(
            rendered_places(&stderr(&shown)),
            expected,
            "{}",
            file.display()
        );
        let marker = tree.marker.display().to_string();
        let commands: [&[&str]; 7] = [
            &["run", "probe"],
            &["run", "probe", "--check"],
            &["exec", "localhost", "--", "touch", &marker],
            &["schedule", "next"],
            &["status"],
            &["trigger", "probe"],
            &["hosts", "list"],
        ];
        for args in commands {
            let out = tree.nightshift(args);
            assert_refused(&out, &expected, &format!("{} · {args:?}", file.display()));
        }
        let out = tree.daemon(Duration::from_secs(30));
        assert_refused(&out, &expected, &format!("{} · daemon", file.display()));
        assert!(!tree.marker.exists(), "{}: a command ran", file.display());
        assert!(
            !tree.data().join("catalog.sqlite").exists(),
            "{}: a run was recorded",
            file.display()
        );
    }
}

fn assert_refused(out: &Output, expected: &[String], what: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {text}");
    assert_eq!(rendered_places(&text), expected, "{what}: {text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("error: the plan has")),
        "{what}: {text}"
    );
}
