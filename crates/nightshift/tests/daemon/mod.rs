//! `nightshift daemon`, `trigger` and `status` as real processes on this
//! machine: hosts reached through the local transport, the catalog a real
//! SQLite file, signals sent with kill(1). The fleet tier is in `fleet`.

mod fleet;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nightshift_catalog::{CATALOG_FILE, Catalog, RunDetail, RunFilter};

use crate::common::{stderr, stdout};

/// A plan tree with a daemon that may be running on it.
pub struct DaemonTree {
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl DaemonTree {
    /// `config` is added to the config file; `inventory` is its TOML.
    pub fn new(config: &str, inventory: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = Self { dir, daemon: None };
        tree.write(
            "nightshift.toml",
            &format!(
                "inventory = \"inventory.toml\"\nplaybooks = \"playbooks\"\nschedules = \"schedules\"\n{config}"
            ),
        );
        tree.write("inventory.toml", inventory);
        std::fs::create_dir_all(tree.path().join("schedules")).expect("schedules");
        std::fs::create_dir_all(tree.data()).expect("data dir");
        tree
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn write(&self, name: &str, text: &str) {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nightshift"));
        command
            .arg("--config")
            .arg(self.path().join("nightshift.toml"))
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .env_remove("NIGHTSHIFT_PASSPHRASE")
            .env_remove("NIGHTSHIFT_LOG")
            .env_remove("SSH_AUTH_SOCK")
            .env("TZ", "UTC")
            .env("USER", "tester")
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("nightshift runs")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("daemon.log")
    }

    /// What the daemon has logged so far (all its starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the daemon and waits until `status` sees it.
    pub fn start(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut args = vec!["daemon"];
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        self.daemon = Some(child);
        self.wait_until("the daemon is up", |tree| {
            tree.json(&["status", "--json"])["daemon"]["pid"].is_u64()
        });
    }

    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().expect("a daemon").id()
    }

    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the daemon to exit; returns how it exited.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.daemon.take().expect("a daemon");
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the daemon did not exit in time; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let until = Instant::now() + Duration::from_secs(90);
        while !done(self) {
            assert!(
                Instant::now() < until,
                "timed out waiting until {what}; the daemon's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Reads the catalog directly.
    pub fn catalog<T>(&self, read: impl AsyncFnOnce(&Catalog) -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let catalog = Catalog::open(&self.data().join(CATALOG_FILE))
                .await
                .expect("catalog");
            let value = read(&catalog).await;
            catalog.close().await;
            value
        })
    }

    pub fn runs(&self) -> Vec<RunDetail> {
        self.catalog(async |c| {
            let mut details = Vec::new();
            for row in c.runs(&RunFilter::default()).await.expect("runs") {
                details.push(c.run_detail(row.id).await.expect("detail").expect("run"));
            }
            details
        })
    }

    pub fn step_status(&self, step: &str) -> Option<String> {
        self.runs()
            .iter()
            .flat_map(|r| &r.jobs)
            .flat_map(|j| &j.steps)
            .find(|s| s.name == step)
            .map(|s| s.status.clone())
    }
}

impl Drop for DaemonTree {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn local_hosts(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[hosts.{n}]\naddress = \"localhost\"\n"))
        .collect()
}

fn playbook(name: &str, steps: &str) -> String {
    format!("name = \"{name}\"\ntargets = [\"all\"]\n{steps}")
}

/// A daily window that is closed now and for the next hours.
fn closed_window(name: &str) -> String {
    let start = (chrono::Utc::now() + chrono::TimeDelta::hours(6)).format("%H:00");
    let end = (chrono::Utc::now() + chrono::TimeDelta::hours(7)).format("%H:00");
    format!("[windows.{name}]\nstart = \"{start}\"\nend = \"{end}\"\ntimezone = \"UTC\"\n")
}

const QUICK: &str =
    "[[steps]]\nname = \"hello\"\ncommand = \"echo \\\"hello from $NIGHTSHIFT_HOST\\\"\"\n";

#[test]
fn a_triggered_run_goes_through_the_daemon_and_status_tells_what_runs_when() {
    let mut tree = DaemonTree::new("", &local_hosts(&["h1", "h2"]));
    tree.write("playbooks/work.toml", &playbook("work", QUICK));
    tree.write(
        "schedules/nightly.toml",
        "[[schedule]]\nplaybook = \"work\"\ncron = \"30 1 * * Tue-Fri\"\ntimezone = \"Europe/Berlin\"\nwindow = \"weeknights\"\n\n\
         [windows.weeknights]\ndays = [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\"]\nstart = \"01:00\"\nend = \"05:00\"\n",
    );
    // No daemon yet: a trigger says how to get one.
    let out = tree.run(&["trigger", "work"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no nightshift daemon is running"),
        "{}",
        stderr(&out)
    );
    tree.start(&[]);
    let again = tree.run(&["daemon"]);
    assert_eq!(again.status.code(), Some(1), "one daemon per data dir");
    assert!(
        stderr(&again).contains(&format!("another nightshift daemon (pid {}", tree.pid())),
        "{}",
        stderr(&again)
    );

    let status = tree.json(&["status", "--json"]);
    assert_eq!(status["daemon"]["pid"], tree.pid());
    let schedule = &status["schedules"][0];
    assert_eq!(schedule["playbook"], "work");
    assert_eq!(schedule["window"], "weeknights");
    let next = schedule["next"].as_str().expect("a next fire");
    assert!(next.contains("T01:30:00+01:00"), "{next}");
    let text = stdout(&tree.run(&["status"]));
    assert!(
        text.contains(&format!("daemon running · pid {}", tree.pid())),
        "{text}"
    );
    assert!(text.contains("01:30 +01:00 (closes"), "{text}");

    // The playbook has a schedule and its window is closed (unless this
    // runs on a weeknight between 01:00 and 05:00 Berlin time): so the
    // trigger overrides it, with a reason.
    let out = tree.run(&[
        "trigger",
        "work",
        "--ignore-window",
        "--reason",
        "CVE-2026-0001",
        "--wait",
    ]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), tree.log());
    assert!(
        stderr(&out).contains(" ok · nightshift runs show "),
        "{}",
        stderr(&out)
    );
    let runs = tree.runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0].run;
    assert_eq!(
        (
            run.status.as_str(),
            run.trigger.as_str(),
            run.operator.as_deref()
        ),
        ("ok", "manual", Some("tester"))
    );
    let outputs: Vec<&str> = runs[0]
        .jobs
        .iter()
        .filter_map(|j| j.steps[0].output_tail.as_deref())
        .collect();
    assert_eq!(outputs, ["hello from h1\n", "hello from h2\n"]);
    let audit = tree.catalog(async |c| c.audit_entries(5).await.expect("audit"));
    assert_eq!(audit[0].action, "trigger --ignore-window");
    assert_eq!(audit[0].actor, "tester");
    assert!(
        audit[0].arguments.contains("CVE-2026-0001"),
        "{}",
        audit[0].arguments
    );

    let status = tree.json(&["status", "--json"]);
    assert_eq!(status["last"][0]["playbook"], "work");
    assert_eq!(status["last"][0]["status"], "ok");
    tree.signal("TERM");
    assert!(tree.wait_exit(Duration::from_secs(20)).success());
    assert!(tree.json(&["status", "--json"])["daemon"].is_null());
}

#[test]
fn a_trigger_waits_while_its_window_is_closed_and_ignore_window_needs_a_reason() {
    let mut tree = DaemonTree::new("", &local_hosts(&["h1"]));
    tree.write("playbooks/work.toml", &playbook("work", QUICK));
    tree.write(
        "schedules/later.toml",
        &format!(
            "[[schedule]]\nplaybook = \"work\"\ncron = \"0 * * * *\"\ntimezone = \"UTC\"\nwindow = \"later\"\n\n{}",
            closed_window("later")
        ),
    );
    let out = tree.run(&["trigger", "work", "--ignore-window"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
    tree.start(&[]);
    let out = tree.run(&["trigger", "work", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    tree.wait_until("the request waits for its window", |t| {
        t.json(&["status", "--json"])["triggers"][0]["state"] == "waiting"
    });
    let status = tree.json(&["status", "--json"]);
    let detail = status["triggers"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("waiting: the window later is closed; it opens at "),
        "{detail}"
    );
    assert!(tree.runs().is_empty(), "nothing ran outside the window");
    assert!(stdout(&tree.run(&["status"])).contains("WAITING"));
}

#[test]
fn sigterm_mid_run_records_interrupted_jobs_and_a_restarted_daemon_carries_on() {
    let mut tree = DaemonTree::new("[daemon]\ngrace = \"1s\"\n", &local_hosts(&["h1"]));
    tree.write(
        "playbooks/slow.toml",
        &playbook(
            "slow",
            "[[steps]]\nname = \"long\"\ncommand = \"sleep 120\"\n\n[[steps]]\nname = \"after\"\ncommand = \"true\"\n",
        ),
    );
    tree.write("playbooks/work.toml", &playbook("work", QUICK));
    tree.start(&[]);
    assert!(tree.run(&["trigger", "slow"]).status.success());
    tree.wait_until("the long step runs", |t| {
        t.step_status("long").as_deref() == Some("running")
    });
    // A manual run of the same playbook keeps off the host the daemon's
    // run holds.
    let manual = tree.run(&["run", "slow", "--json"]);
    assert_eq!(manual.status.code(), Some(1), "{}", stderr(&manual));
    let finished = stdout(&manual)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "host_finished")
        .expect("a host_finished event");
    assert_eq!(finished["status"], "skipped");
    assert_eq!(finished["error_kind"], "leased");
    let why = finished["error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("slow is already running on h1 in run "),
        "{why}"
    );
    let asked = Instant::now();
    tree.signal("TERM");
    let exit = tree.wait_exit(Duration::from_secs(40));
    assert!(
        exit.success(),
        "SIGTERM is a clean stop: {exit:?}\n{}",
        tree.log()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    let runs = tree.runs();
    let slow = runs
        .iter()
        .find(|r| r.run.operator.as_deref() == Some("tester") && r.run.status == "interrupted")
        .expect("the daemon's run, interrupted");
    assert_eq!(slow.run.status, "interrupted");
    let why = slow.run.halted_because.clone().unwrap_or_default();
    assert!(
        why.starts_with("the daemon was asked to stop (SIGTERM)"),
        "{why}"
    );
    let job = &slow.jobs[0];
    assert_eq!(
        (job.status.as_str(), job.error_kind.as_deref()),
        ("interrupted", Some("stopped"))
    );
    let steps: Vec<(&str, &str)> = job
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(steps, [("long", "interrupted"), ("after", "skipped")]);
    assert!(
        tree.log().contains("cancelling steps in flight"),
        "{}",
        tree.log()
    );
    // The sleep is gone with its process group: it was sent TERM and KILL
    // before the step was recorded; on a busy machine it may take a moment
    // to be scheduled and die, but not the two minutes it would sleep.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = Command::new("pgrep")
            .args(["-f", "^sleep 120$"])
            .output()
            .expect("pgrep");
        if left.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "still running: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    tree.start(&[]);
    let out = tree.run(&["trigger", "work", "--wait"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), tree.log());
    assert_eq!(tree.runs()[0].run.status, "ok");
    assert_eq!(
        tree.catalog(async |c| c.leases().await.expect("leases")),
        0,
        "every lease was given back"
    );
}

#[test]
fn sighup_keeps_the_running_configuration_when_the_new_one_is_invalid() {
    let mut tree = DaemonTree::new("", &local_hosts(&["h1"]));
    tree.write("playbooks/work.toml", &playbook("work", QUICK));
    tree.write(
        "schedules/one.toml",
        "[[schedule]]\nplaybook = \"work\"\ncron = \"0 3 * * *\"\ntimezone = \"UTC\"\nwindow = \"night\"\n\n\
         [windows.night]\nstart = \"01:00\"\nend = \"05:00\"\n",
    );
    tree.start(&[]);
    tree.write(
        "schedules/two.toml",
        "[[schedule]]\nplaybok = \"work\"\ncron = \"0 4 * * *\"\ntimezone = \"UTC\"\nwindow = \"night\"\n",
    );
    tree.signal("HUP");
    tree.wait_until("the daemon refuses the new configuration", |t| {
        t.log().contains("keeping the running one")
    });
    let log = tree.log();
    assert!(log.contains("unknown key `playbok`"), "{log}");
    assert!(log.contains("two.toml:2:1"), "{log}");
    tree.write(
        "schedules/two.toml",
        "[[schedule]]\nplaybook = \"work\"\ncron = \"0 4 * * *\"\ntimezone = \"UTC\"\nwindow = \"night\"\n",
    );
    tree.signal("HUP");
    tree.wait_until("the daemon takes the fixed configuration", |t| {
        t.log().contains("configuration reloaded")
    });
    assert!(tree.log().contains("schedules=2"), "{}", tree.log());
    // Still the same, live daemon.
    assert_eq!(
        tree.json(&["status", "--json"])["daemon"]["pid"],
        tree.pid()
    );
}

/// An HTTP receiver: the head and body of each POST, the first `refuse`
/// of them answered 500, the rest 200.
fn webhook_receiver(refuse: usize) -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().flatten().enumerate() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut stream = reader.into_inner();
            let answer: &[u8] = if n < refuse {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer);
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (port, rx)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    reply
}

#[test]
fn a_failed_run_is_posted_to_the_webhook_and_counted_in_the_metrics() {
    let (hook, posts) = webhook_receiver(1);
    let mut tree = DaemonTree::new(
        &format!("[notify]\nwebhook = \"http://127.0.0.1:{hook}/hooks/T0PS3CRET\"\nretries = 2\n"),
        &local_hosts(&["h1", "h2"]),
    );
    tree.write(
        "playbooks/broken.toml",
        &playbook(
            "broken",
            "[[steps]]\nname = \"fails on h2\"\ncommand = \"test \\\"$NIGHTSHIFT_HOST\\\" != h2\"\n",
        ),
    );
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    tree.start(&["--metrics-listen", &listen]);
    let out = tree.run(&["trigger", "broken", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run failed: {}",
        stderr(&out)
    );
    // The first attempt is answered 500; the retry a second later lands.
    let (_, refused) = posts
        .recv_timeout(Duration::from_secs(30))
        .expect("a webhook POST");
    let (head, body) = posts
        .recv_timeout(Duration::from_secs(30))
        .expect("the retried POST");
    assert_eq!(refused, body, "the retry sends the same notice");
    tree.wait_until("the failed attempt is logged", |t| {
        t.log().contains("the webhook failed: it answered 500")
    });
    assert!(
        posts.recv_timeout(Duration::from_secs(3)).is_err(),
        "no attempt after one that landed"
    );
    assert!(head.starts_with("POST /hooks/T0PS3CRET HTTP/1.1"), "{head}");
    let notice: serde_json::Value = serde_json::from_str(&body).expect("JSON payload");
    assert_eq!(notice["event"], "run_failed");
    assert_eq!(notice["playbook"], "broken");
    assert_eq!(notice["status"], "failed");
    assert_eq!(notice["run"], tree.runs()[0].run.id);
    assert_eq!(notice["hosts"].as_array().map(Vec::len), Some(1));
    assert_eq!(notice["hosts"][0]["host"], "h2");
    assert_eq!(notice["hosts"][0]["status"], "failed");

    let reply = http_get(metrics, "/metrics");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    for line in [
        "nightshift_runs_total{outcome=\"failed\"} 1",
        "nightshift_hosts{last_job_status=\"failed\"} 1",
        "nightshift_hosts{last_job_status=\"ok\"} 1",
        "nightshift_steps_in_flight 0",
    ] {
        assert!(reply.lines().any(|l| l == line), "{line} missing:\n{reply}");
    }
    assert_eq!(
        tree.json(&["status", "--json"])["daemon"]["metrics"],
        listen.as_str()
    );
    assert!(
        !tree.log().contains("T0PS3CRET"),
        "the webhook's token leaked:\n{}",
        tree.log()
    );
}
