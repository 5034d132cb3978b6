//! `verify = { ... }`: a health command with an expected exit code and
//! output, retried; or a check of this host's latest snapshot
//! (`backup_check`), or a restore test of it on the host (`restore_test`).

use std::time::Duration;

use nightshift_plan::{HealthCheck, Verify};
use nightshift_transport::ExitStatus;

use crate::job::HostRun;
use crate::step::{Done, StepError};

pub async fn run(host: &mut HostRun<'_>, verify: &Verify, limit: Duration) -> Done {
    let (kind, done) = match verify {
        Verify::Command(health) => return health_check(host, health, limit).await,
        Verify::BackupCheck => ("store_check", super::backup::check(host).await),
        Verify::RestoreTest => (
            "restore_test",
            super::backup::restore_test(host, limit).await,
        ),
    };
    if !host.check {
        record(host, kind, &done).await;
    }
    done
}

async fn health_check(host: &mut HostRun<'_>, verify: &HealthCheck, limit: Duration) -> Done {
    let line = &verify.command;
    if host.check {
        return Done::would(format!("would verify with `{line}`"));
    }
    let pattern = verify.expect_output.as_ref();
    let tries = verify.retries + 1;
    let delay = verify.delay.map_or(Duration::from_secs(5), |d| d.0);
    let mut log = Vec::new();
    for attempt in 1..=tries {
        let command = super::command(host, line, limit);
        let verdict = match super::exec(host, &command).await {
            Ok(output) => {
                log.extend(super::log_of(&output));
                judge(&output, verify.expect_exit, pattern)
            }
            Err(error) if error.lost_host() => return Done::fail(error),
            Err(error) => Err(error.message),
        };
        match verdict {
            Ok(summary) => {
                let mut done = Done::ok(summary);
                done.output = log;
                return done;
            }
            Err(why) if attempt == tries => {
                let mut done = Done::fail(StepError::new("verify_failed", why));
                log.append(&mut done.output);
                done.output = log;
                done.retryable = true;
                return done;
            }
            Err(why) => {
                log.extend(
                    format!(
                        "check {attempt} of {tries}: {why}; again in {}s\n",
                        delay.as_secs()
                    )
                    .into_bytes(),
                );
                host.progress(format!("{why}; again in {}s", delay.as_secs()));
                tokio::time::sleep(delay).await;
            }
        }
    }
    Done::fail(StepError::new("verify_failed", "no check ran"))
}

fn judge(
    output: &nightshift_transport::Output,
    expect_exit: i32,
    pattern: Option<&regex::Regex>,
) -> Result<String, String> {
    if output.status != ExitStatus::Code(expect_exit) {
        return Err(format!("{} (expected exit {expect_exit})", output.status));
    }
    match pattern {
        Some(pattern) => {
            let text = output.stdout.text();
            if pattern.is_match(&text) {
                Ok(format!("{} and output matches /{pattern}/", output.status))
            } else {
                Err(format!("output does not match /{pattern}/"))
            }
        }
        None => Ok(output.status.to_string()),
    }
}

/// A backup check or restore test is evidence for the compliance report:
/// it goes to the catalog's verifications with the job that ran it.
async fn record(host: &HostRun<'_>, kind: &str, done: &Done) {
    let figures = serde_json::json!({
        "summary": done.summary,
        "error": done.error.as_ref().map(|e| e.message.as_str()),
    });
    let verification = nightshift_catalog::Verification {
        kind,
        host: Some(host.name()),
        snapshot: None,
        ok: !done.failed,
        figures: &figures,
        at: chrono::Utc::now(),
        job: host.job,
    };
    host.env
        .record("the verification", |c| c.record_verification(&verification))
        .await;
}
