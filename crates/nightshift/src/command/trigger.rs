//! `nightshift trigger PLAYBOOK`: asks the running daemon for a run now.
//! The request goes through the catalog, where the daemon picks it up
//! within a second; the daemon still keeps the playbook's window (the run
//! waits for it) unless `--ignore-window --reason` says otherwise, which is
//! written to the audit log.

use crate::settings::Settings;
use clap::Args;
use nightshift_catalog::{CATALOG_FILE, Catalog, NewTrigger, TriggerRow};
use nightshift_daemon::lock;
use nightshift_engine::launch::find_playbook;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The playbook, by name
    pub playbook: String,
    /// Only these of its hosts: names, group:NAME, globs, exclusions like !db3, comma-separated
    #[arg(long)]
    pub limit: Option<String>,
    /// Run now even if the playbook's window (and the hosts' own) is closed; needs --reason, and is audited
    #[arg(long, requires = "reason")]
    pub ignore_window: bool,
    /// Why the window is overridden, for the audit log
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait for the run to end and exit with its outcome
    #[arg(long)]
    pub wait: bool,
    /// Print the request (and, with --wait, the run) as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(settings: &Settings, args: &TriggerArgs) -> anyhow::Result<ExitCode> {
    let plan = settings.plan()?;
    let playbook = find_playbook(&plan, &args.playbook)?.name.clone();
    let Some(daemon) = lock::running(&settings.data_dir) else {
        anyhow::bail!(
            "no nightshift daemon is running for the data dir {}; start it (`nightshift daemon`, or `systemctl start nightshift`), or run the playbook now with `nightshift run {playbook}`",
            settings.data_dir.display()
        );
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let catalog = Catalog::open(&settings.data_dir.join(CATALOG_FILE)).await?;
        let operator = crate::operator();
        let id = catalog
            .request_trigger(&NewTrigger {
                playbook: &playbook,
                host_limit: args.limit.as_deref(),
                ignore_window: args.ignore_window,
                reason: args.reason.as_deref(),
                requested_by: &operator,
                at: chrono::Utc::now(),
            })
            .await?;
        if !args.wait {
            say(
                args.json,
                &serde_json::json!({"request": id, "playbook": playbook, "daemon_pid": daemon.pid}),
                &format!(
                    "trigger request {id} for {playbook}: the daemon (pid {}) takes it within a second · nightshift status",
                    daemon.pid
                ),
            );
            catalog.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        let code = wait(&catalog, &settings.data_dir, id, args.json).await;
        catalog.close().await;
        code
    })
}

fn say(json: bool, doc: &serde_json::Value, text: &str) {
    if json {
        println!("{doc}");
    } else {
        eprintln!("{text}");
    }
}

/// Follows the request to the end of its run.
async fn wait(
    catalog: &Catalog,
    data_dir: &std::path::Path,
    id: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut told = None;
    loop {
        if lock::running(data_dir).is_none() {
            anyhow::bail!(
                "the daemon stopped before it started trigger request {id}; the request stays, for the daemon's next start"
            );
        }
        let request: TriggerRow = catalog
            .trigger(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("trigger request {id} is gone from the catalog"))?;
        match (request.state.as_str(), request.run_id) {
            ("refused", _) => {
                let why = request.detail.unwrap_or_default();
                say(
                    json,
                    &serde_json::json!({"request": id, "state": "refused", "detail": why}),
                    &format!("trigger request {id} refused by the daemon: {why}"),
                );
                return Ok(ExitCode::FAILURE);
            }
            ("started", Some(run)) => return follow_run(catalog, id, run, json).await,
            (state, _) => {
                if told.as_ref() != Some(&request.detail) && !json && state == "waiting" {
                    eprintln!("{}", request.detail.clone().unwrap_or_default());
                }
                told = Some(request.detail);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn follow_run(catalog: &Catalog, id: i64, run: i64, json: bool) -> anyhow::Result<ExitCode> {
    if !json {
        eprintln!("trigger request {id} became run {run}; waiting for it to end");
    }
    loop {
        let detail = catalog
            .run_detail(run)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run {run} is gone from the catalog"))?;
        if detail.run.status != "running" {
            let row = &detail.run;
            say(
                json,
                &serde_json::json!({"request": id, "run": row}),
                &format!(
                    "run {run} {}{} · nightshift runs show {run}",
                    row.status,
                    row.halted_because
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            );
            return Ok(if row.status == "ok" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
