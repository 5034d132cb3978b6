//! `nightshift run`: rollouts over hosts reached through the local
//! transport (tier 1 and 2: batches, halting, timeouts, retries, `when`,
//! the catalog's record, the quickstart), and over the Docker fleet
//! (tier 3, in `fleet`).

pub(crate) mod fleet;

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::common::{stderr, stdout};

/// A plan tree whose hosts all live on this machine, reached through the
/// local transport; commands tell them apart by `$NIGHTSHIFT_HOST`.
struct LocalTree {
    dir: tempfile::TempDir,
}

impl LocalTree {
    fn new(hosts: usize, playbook: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("nightshift.toml"),
            "inventory = \"inventory.toml\"\nplaybooks = \"playbooks\"\nschedules = \"schedules\"\n",
        )
        .expect("config");
        let inventory: String = (1..=hosts)
            .map(|n| format!("[hosts.h{n}]\naddress = \"localhost\"\ngroups = [\"local\"]\n"))
            .collect();
        fs::write(dir.path().join("inventory.toml"), inventory).expect("inventory");
        fs::create_dir_all(dir.path().join("playbooks")).expect("playbooks");
        fs::create_dir_all(dir.path().join("schedules")).expect("schedules");
        fs::write(dir.path().join("playbooks/test.toml"), playbook).expect("playbook");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
            .arg("--config")
            .arg(self.path().join("nightshift.toml"))
            .arg("--data-dir")
            .arg(self.path().join("data"))
            .args(args)
            .env_remove("NIGHTSHIFT_PASSPHRASE")
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("nightshift runs")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

/// The JSON events a `run --json` printed.
fn events(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

#[test]
fn a_failure_past_max_failures_halts_after_the_step_in_flight() {
    let tree = LocalTree::new(
        5,
        r#"
name = "halting"
targets = ["group:local"]
serial = 2
max_failures = 0

[[steps]]
name = "probe"
command = "if [ \"$NIGHTSHIFT_HOST\" = h3 ]; then exit 7; fi; sleep 1"

[[steps]]
name = "after"
command = "echo after on $NIGHTSHIFT_HOST"
"#,
    );
    let out = tree.run(&["run", "halting", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events = events(&out);
    let batches: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "batch_started")
        .map(|e| e["batch"].as_u64().expect("batch"))
        .collect();
    assert_eq!(batches, [1, 2], "the third batch never starts");
    let end = events.last().expect("events");
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["status"], "halted");
    assert_eq!(end["skipped"], 1, "{end}");
    let job = |host: &str| {
        events
            .iter()
            .find(|e| e["event"] == "host_finished" && e["host"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("{host} finished: {events:?}"))
    };
    assert_eq!(job("h1")["status"], "ok");
    assert_eq!(job("h3")["status"], "failed");
    assert_eq!(job("h3")["steps"][0]["summary"], "exit 7");
    // h4 was in flight: it finished `probe`, then stopped.
    let h4 = job("h4");
    assert_eq!(h4["status"], "interrupted", "{h4}");
    assert_eq!(h4["steps"][0]["status"], "ok");
    assert_eq!(h4["steps"][1]["status"], "skipped");

    let runs = tree.json(&["runs", "--json"]);
    assert_eq!(runs[0]["status"], "halted", "{runs}");
    assert!(
        runs[0]["halted_because"]
            .as_str()
            .is_some_and(|r| r.contains("h3")),
        "{runs}"
    );
    let id = runs[0]["id"].to_string();
    let detail = tree.json(&["runs", "show", &id, "--json"]);
    let recorded = |host: &str| {
        detail["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["host"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("{host} in {detail}"))
    };
    let h5 = recorded("h5");
    assert_eq!(h5["status"], "skipped", "h5 never ran: {h5}");
    assert_eq!(h5["error_kind"], "halted", "{h5}");
    let h3 = recorded("h3");
    assert_eq!(h3["steps"][0]["exit_code"], 7, "{h3}");
}

#[test]
fn retries_when_and_continue_on_error_shape_the_steps() {
    let tree = LocalTree::new(
        1,
        r#"
name = "steps"
targets = ["h1"]

[[steps]]
name = "flaky"
command = "n=$(cat \"$TMPDIR_T/count\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$TMPDIR_T/count\"; [ $n -ge 3 ]"
retries = 2
delay = "1s"

[[steps]]
name = "allowed to fail"
command = "exit 3"
continue_on_error = true

[[steps]]
name = "on failure"
command = "echo cleaning up"
when = "failed:allowed to fail"

[[steps]]
name = "never"
command = "echo no"
when = "not changed"

[[steps]]
name = "health"
verify = { command = "echo healthy", expect_output = "^heal" }

[[steps]]
name = "slow"
command = "sleep 30"
timeout = "1s"
"#,
    );
    let playbook = fs::read_to_string(tree.path().join("playbooks/test.toml")).expect("read");
    let dir = tree.path().display().to_string();
    fs::write(
        tree.path().join("playbooks/test.toml"),
        playbook.replace("$TMPDIR_T", &dir),
    )
    .expect("write");
    let out = tree.run(&["run", "steps", "--json"]);
    assert_eq!(out.status.code(), Some(1), "the timeout fails the host");
    let events = events(&out);
    let job = events
        .iter()
        .find(|e| e["event"] == "host_finished")
        .expect("a job");
    let steps = job["steps"].as_array().expect("steps");
    let by_name = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("{name}: {job}"))
    };
    assert_eq!(by_name("flaky")["status"], "ok");
    assert_eq!(by_name("flaky")["attempts"], 3);
    assert_eq!(by_name("allowed to fail")["status"], "failed");
    assert_eq!(by_name("on failure")["status"], "ok");
    assert_eq!(by_name("never")["status"], "skipped");
    assert_eq!(by_name("health")["status"], "ok");
    let slow = by_name("slow");
    assert_eq!(slow["status"], "failed");
    assert_eq!(slow["error_kind"], "timeout", "{slow}");
    assert!(
        slow["elapsed"].as_u64().expect("ms") < 10_000,
        "the timeout stopped it: {slow}"
    );
    assert_eq!(job["status"], "failed");
}

#[test]
fn check_mode_changes_nothing_and_records_nothing() {
    let tree = LocalTree::new(
        2,
        r#"
name = "careful"
targets = ["all"]

[[steps]]
name = "write"
command = "touch \"$MARK.$NIGHTSHIFT_HOST\""
"#,
    );
    let mark = tree.path().join("mark");
    let playbook = fs::read_to_string(tree.path().join("playbooks/test.toml")).expect("read");
    fs::write(
        tree.path().join("playbooks/test.toml"),
        playbook.replace("$MARK", &mark.display().to_string()),
    )
    .expect("write");
    let out = tree.run(&["run", "careful", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("h1"), "{}", stdout(&out));
    assert!(
        !tree.path().join("mark.h1").exists(),
        "check mode ran the command"
    );
    let runs = tree.json(&["runs", "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");

    let out = tree.run(&["run", "careful"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tree.path().join("mark.h1").exists() && tree.path().join("mark.h2").exists());
    assert!(
        stdout(&out).contains("nightshift runs show"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_unknown_playbook_and_a_stray_limit_say_what_exists() {
    let tree = LocalTree::new(
        1,
        "name = \"only\"\ntargets = [\"h1\"]\n[[steps]]\nname = \"x\"\ncommand = \"true\"\n",
    );
    let out = tree.run(&["run", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("known playbooks: only"),
        "{}",
        stderr(&out)
    );
    let out = tree.run(&["run", "only", "--limit", "web9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`web9` matches no host"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_backup_step_pulls_a_tree_and_restore_test_proves_it_on_the_host() {
    let tree = LocalTree::new(2, "");
    let source = tree.path().join("source");
    fs::create_dir_all(source.join("sub")).expect("mkdir");
    fs::write(source.join("a.conf"), "alpha\n").expect("write");
    fs::write(source.join("sub/b.conf"), vec![7u8; 300_000]).expect("write");
    fs::write(source.join("skip.tmp"), "temporary").expect("write");
    fs::write(
        tree.path().join("playbooks/test.toml"),
        format!(
            r#"
name = "pull"
targets = ["all"]

[[steps]]
name = "backup"
backup = {{ paths = ["{}"], exclude = ["*.tmp"], tags = ["nightly"], streams = [{{ name = "dump.sql", command = "echo dump of $NIGHTSHIFT_HOST" }}] }}

[[steps]]
name = "read back"
verify = {{ backup_check = true }}

[[steps]]
name = "restore test"
verify = {{ restore_test = true }}
"#,
            source.display()
        ),
    )
    .expect("playbook");
    // One host at a time: backups running side by side cannot see each
    // other's new chunks, so only the later one finds the data stored.
    let out = tree.run(&["run", "pull", "--json", "--forks", "1"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let events = events(&out);
    for job in events.iter().filter(|e| e["event"] == "host_finished") {
        assert_eq!(job["status"], "ok", "{job}");
        let restore = &job["steps"][2]["summary"];
        assert!(
            restore.as_str().is_some_and(|s| s.contains("all verified")),
            "{job}"
        );
    }
    let snapshots = tree.json(&["snapshots", "--json"]);
    let list = snapshots.as_array().expect("snapshots");
    assert_eq!(list.len(), 2, "one per host: {snapshots}");
    let tags = list[0]["tags"].as_array().expect("tags");
    assert!(
        tags.iter().any(|t| t == "nightly") && tags.iter().any(|t| t == "playbook:pull"),
        "{snapshots}"
    );
    // The second host's data was already stored: nothing new.
    let new: Vec<u64> = list
        .iter()
        .map(|s| s["summary"]["new_bytes_raw"].as_u64().expect("bytes"))
        .collect();
    assert!(
        new[1] * 100 < new[0],
        "identical data is stored once (only a tree may differ): {new:?}"
    );

    let target = tree.path().join("restored");
    let id = list[0]["id"].as_str().expect("id").to_string();
    let restore = tree.run(&["restore", &id, "--to", target.to_str().expect("utf-8")]);
    assert!(restore.status.success(), "{}", stderr(&restore));
    let landed = target.join(source.strip_prefix("/").expect("absolute"));
    assert_eq!(fs::read(landed.join("a.conf")).expect("a.conf"), b"alpha\n");
    assert_eq!(
        fs::read(landed.join("sub/b.conf")).expect("b.conf"),
        vec![7u8; 300_000]
    );
    assert!(!landed.join("skip.tmp").exists(), "excluded");
    let host = list[0]["host"].as_str().expect("host");
    assert_eq!(
        fs::read_to_string(target.join("dump.sql")).expect("the stream is a file of the snapshot"),
        format!("dump of {host}\n")
    );
    let paths = list[0]["paths"].as_array().expect("paths");
    assert!(paths.iter().any(|p| p == "stream:dump.sql"), "{snapshots}");

    // A second run reads only what changed.
    fs::write(source.join("a.conf"), "alpha, changed\n").expect("write");
    let out = tree.run(&["run", "pull", "--limit", "h1", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 files") || stdout(&out).contains("1 files"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn the_quickstart_runs_on_this_machine_without_root() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["run", "quickstart"])
        .current_dir(crate::common::repo_root())
        .env("NIGHTSHIFT_DATA_DIR", data.path())
        .env_remove("NIGHTSHIFT_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("nightshift runs");
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("localhost") && text.contains("ok"), "{text}");
    assert!(
        text.contains("nightshift snapshots"),
        "the next commands to try: {text}"
    );
    assert!(
        data.path().join("store.key").exists(),
        "the quickstart never prompts"
    );
    let snapshots = crate::common::in_data_dir(data.path(), &["snapshots", "--json"], &[]);
    let list: serde_json::Value = serde_json::from_slice(&snapshots.stdout).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn a_controller_killed_mid_run_leaves_a_run_that_reads_interrupted() {
    let tree = LocalTree::new(
        2,
        r#"
name = "long"
targets = ["all"]

[[steps]]
name = "quick"
command = "true"

[[steps]]
name = "long"
command = "sleep 20"
"#,
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .arg("--config")
        .arg(tree.path().join("nightshift.toml"))
        .arg("--data-dir")
        .arg(tree.path().join("data"))
        .args(["run", "long", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nightshift starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().expect("stdout"),
    ));
    let mut long_steps = 0;
    while long_steps < 2 {
        let line = lines.next().expect("an event").expect("a line");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        if event["event"] == "step_started" && event["step"] == "long" {
            long_steps += 1;
        }
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");

    let runs = tree.json(&["runs", "--json"]);
    assert_eq!(
        runs[0]["status"], "running",
        "nothing has looked yet: {runs}"
    );
    // The next run finds the dead controller's run and says so.
    let out = tree.run(&["run", "long", "--limit", "h1", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tree.run(&["exec", "h1", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fs::write(
        tree.path().join("playbooks/test.toml"),
        "name = \"long\"\ntargets = [\"all\"]\n[[steps]]\nname = \"quick\"\ncommand = \"true\"\n",
    )
    .expect("playbook");
    let out = tree.run(&["run", "long"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let runs = tree.json(&["runs", "--json"]);
    let first = runs
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["status"] != "ok")
        .expect("the killed run");
    assert_eq!(first["status"], "interrupted", "{runs}");
    let id = first["id"].to_string();
    let detail = tree.json(&["runs", "show", &id, "--json"]);
    for job in detail["jobs"].as_array().expect("jobs") {
        assert_eq!(job["status"], "interrupted", "{job}");
        assert_eq!(job["steps"][0]["status"], "ok", "{job}");
        assert_eq!(job["steps"][1]["status"], "interrupted", "{job}");
    }
}

#[test]
fn forget_after_a_backup_applies_the_hosts_inventory_policy() {
    let tree = LocalTree::new(1, "");
    fs::write(
        tree.path().join("inventory.toml"),
        "[hosts.h1]\naddress = \"localhost\"\n[hosts.h1.backup]\nkeep_last = 1\n",
    )
    .expect("inventory");
    let source = tree.path().join("source");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(
        tree.path().join("playbooks/test.toml"),
        format!(
            "name = \"keep\"\ntargets = [\"h1\"]\n[[steps]]\nname = \"backup\"\nbackup = {{ paths = [\"{}\"], forget = true }}\n",
            source.display()
        ),
    )
    .expect("playbook");
    for generation in 0..3 {
        fs::write(source.join("f"), format!("generation {generation}")).expect("write");
        let out = tree.run(&["run", "keep"]);
        assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    }
    let snapshots = tree.json(&["snapshots", "--json"]);
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");
}

/// A one-host tree whose playbook `test` has `steps`; `{SOURCE}` in them
/// is a directory holding one file.
fn backup_tree(steps: &str) -> LocalTree {
    let tree = LocalTree::new(1, "");
    let source = tree.path().join("source");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("a"), "a").expect("write");
    let playbook = format!("name = \"test\"\ntargets = [\"h1\"]\n{steps}")
        .replace("{SOURCE}", &source.display().to_string());
    fs::write(tree.path().join("playbooks/test.toml"), playbook).expect("playbook");
    tree
}

/// The one host's job of a failed `run --json`, and its error text.
fn failed_job(out: &Output) -> (serde_json::Value, String) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let job = events(out)
        .into_iter()
        .find(|e| e["event"] == "host_finished")
        .expect("a job");
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().expect("an error").to_string();
    (job, error)
}

#[test]
fn a_dump_that_fails_fails_the_backup_and_leaves_no_snapshot() {
    let tree = backup_tree(
        r#"[[steps]]
name = "backup"
backup = { paths = ["{SOURCE}"], streams = [{ name = "db.sql", command = "echo half a dump; echo broken >&2; exit 3" }] }
"#,
    );
    let (_, error) = failed_job(&tree.run(&["run", "test", "--json"]));
    assert!(
        error.contains("exit 3") && error.contains("broken"),
        "{error}"
    );
    let snapshots = tree.json(&["snapshots", "--json"]);
    assert_eq!(snapshots.as_array().map(Vec::len), Some(0), "{snapshots}");
}

#[test]
fn check_mode_creates_no_store_and_counts_everything_as_new() {
    let tree = backup_tree(
        r#"[[steps]]
name = "backup"
backup = { paths = ["{SOURCE}"] }

[[steps]]
name = "read back"
verify = { backup_check = true }
"#,
    );
    let out = tree.run(&["run", "test", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("all new"), "{}", stderr(&out));
    assert!(
        !tree.path().join("data/store").exists(),
        "check mode made a store"
    );
    assert!(!tree.path().join("data/store.key").exists());
}

#[test]
fn a_dump_that_hangs_is_stopped_at_the_steps_timeout() {
    let tree = backup_tree(
        r#"[[steps]]
name = "backup"
timeout = "2s"
backup = { paths = ["{SOURCE}"], streams = [{ name = "db.sql", command = "echo start; sleep 30" }] }
"#,
    );
    let started = std::time::Instant::now();
    let out = tree.run(&["run", "test", "--json"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "stopped at the timeout, not after the dump: {:?}",
        started.elapsed()
    );
    let (_, error) = failed_job(&out);
    assert!(error.contains("time limit"), "{error}");
    let snapshots = tree.json(&["snapshots", "--json"]);
    assert_eq!(snapshots.as_array().map(Vec::len), Some(0), "{snapshots}");
}
