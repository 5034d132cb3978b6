use crate::settings::Settings;
use anyhow::Context;
use clap::Args;
use nightshift_engine::adhoc::{self, Event, HostResult};
use nightshift_engine::reach::reach;
use nightshift_transport::{Command, ExitStatus, Stream};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Hosts: names, group:NAME, globs, all, and exclusions like !db3, comma-separated
    pub targets: String,
    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Hosts worked on at once [default: the config's ssh.forks, 50]
    #[arg(long)]
    pub forks: Option<usize>,
    /// Stop the command on a host after this long (45s, 10m)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Run through `sudo -n`
    #[arg(long = "become", short = 'b')]
    pub become_root: bool,
    /// Set an environment variable for the command
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Pass this variable from nightshift's own environment, as a secret never shown
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// One JSON object per host instead of live output
    #[arg(long)]
    pub json: bool,
}

/// `nightshift exec TARGETS -- COMMAND`: one command on many hosts, live
/// output prefixed with host names, a summary, and an honest exit code.
pub fn run(settings: &Settings, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let inventory = settings.plan()?.inventory;
    let patterns: Vec<&str> = args
        .targets
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let targets = inventory.targets();
    if let Some(stray) = patterns
        .iter()
        .find(|p| targets.matching(p.trim_start_matches('!')).is_empty())
    {
        anyhow::bail!(
            "`{stray}` matches no host in the inventory; `nightshift hosts list` shows them"
        );
    }
    let names = targets.resolve(&patterns);
    anyhow::ensure!(
        !names.is_empty(),
        "`{}` leaves no host to run on",
        args.targets
    );
    let hosts = names
        .iter()
        .map(|name| Ok((name.to_string(), reach(&inventory, name)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let command = command(args)?;
    let config = crate::settings::ssh_config(settings, &inventory)?;
    let forks = args.forks.unwrap_or(settings.config.ssh.forks);
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let results = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let work = tokio::spawn(adhoc::run(hosts, command, config, forks, tx));
        let mut results = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Line { host, stream, text } if !args.json => {
                    print_line(&host, width, stream, &text)
                }
                Event::Line { .. } => {}
                Event::Done(result) => {
                    report(&result, width, args.json);
                    results.push(result);
                }
            }
        }
        let _ = work.await;
        results
    });
    if !args.json {
        eprintln!("{}", summary(&results, started.elapsed()));
    }
    Ok(if results.iter().all(HostResult::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn command(args: &ExecArgs) -> anyhow::Result<Command> {
    let mut command = Command::new(args.command.join(" ")).become_root(args.become_root);
    if let Some(timeout) = &args.timeout {
        let limit: nightshift_plan::Duration =
            timeout.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        command = command.timeout(limit.0);
    }
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("`--env {pair}` is not NAME=VALUE"))?;
        command = command.env(name, value, false);
    }
    for name in &args.secret_env {
        let value = std::env::var(name).with_context(|| {
            format!("--secret-env {name}: nightshift's environment has no {name}")
        })?;
        command = command.env(name, value, true);
    }
    Ok(command)
}

fn print_line(host: &str, width: usize, stream: Stream, text: &str) {
    let line = format!("{host:<width$}  {text}\n");
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
        Stream::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
    };
}

fn report(result: &HostResult, width: usize, json: bool) {
    if json {
        println!("{}", host_json(result));
        return;
    }
    let host = &result.host;
    match &result.outcome {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!("{host:<width$}  ✗ {}", out.status),
        Err(err) => eprintln!("{host:<width$}  ✗ {err}"),
    }
}

fn host_json(result: &HostResult) -> serde_json::Value {
    let mut doc = json!({
        "host": result.host,
        "ok": result.ok(),
        "elapsed_ms": result.elapsed.as_millis() as u64,
    });
    match &result.outcome {
        Ok(out) => {
            let (code, signal) = match &out.status {
                ExitStatus::Code(c) => (Some(*c), None),
                ExitStatus::Signal(s) => (None, Some(s.clone())),
            };
            doc["exit_code"] = json!(code);
            doc["signal"] = json!(signal);
            doc["stdout"] = json!(out.stdout.text());
            doc["stderr"] = json!(out.stderr.text());
        }
        Err(err) => {
            doc["error_kind"] = json!(err.kind());
            doc["error"] = json!(err.to_string());
        }
    }
    doc
}

/// "5 hosts: 4 ok, 1 failed (unreachable 1) in 2.1s"
fn summary(results: &[HostResult], elapsed: std::time::Duration) -> String {
    let ok = results.iter().filter(|r| r.ok()).count();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results.iter().filter(|r| !r.ok()) {
        let kind = match &r.outcome {
            Ok(_) => "exit non-zero",
            Err(err) => err.kind(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let failed = results.len() - ok;
    let noun = if results.len() == 1 { "host" } else { "hosts" };
    let mut line = format!("{} {noun}: {ok} ok", results.len());
    if failed > 0 {
        let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        line.push_str(&format!(", {failed} failed ({})", by_kind.join(", ")));
    }
    line.push_str(&format!(" in {:.1}s", elapsed.as_secs_f64()));
    line
}
