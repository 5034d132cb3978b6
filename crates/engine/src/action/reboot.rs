//! `reboot = { when = "always" | "required", wait = "10m" }`: leave a
//! marker in `/run`, reboot, wait for the host to come back without it.
//!
//! `/run` is a tmpfs emptied by every boot, so a marker that is gone proves
//! a reboot even where the boot id cannot (a container shares its kernel's
//! boot id with the machine it runs on); the boot id is recorded as well.

use std::time::{Duration, Instant};

use nightshift_plan::{Reboot, RebootWhen};

use crate::job::HostRun;
use crate::packages;
use crate::reach::connect;
use crate::step::{Done, StepError};

const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";
/// The reboot, detached into a session of its own: when this command's SSH
/// session ends, sshd hangs up on its process group, and a reboot still in
/// that group (under load, before it got going) would die with it.
const REBOOT: &str = "if command -v setsid >/dev/null; then \
    setsid -f sh -c 'sleep 1; shutdown -r now || reboot' </dev/null >/dev/null 2>&1; \
    else nohup sh -c 'sleep 1; shutdown -r now || reboot' </dev/null >/dev/null 2>&1 & fi";
/// How long a host may stay up, marker in place, before the reboot is
/// taken as lost and asked for once more.
const STILL_UP: Duration = Duration::from_secs(20);
const DEFAULT_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(2);

pub async fn run(host: &mut HostRun<'_>, reboot: &Reboot) -> Done {
    let needed = match reboot.when {
        RebootWhen::Always => Some("the step says always".to_string()),
        RebootWhen::Required => match required(host).await {
            Ok(reason) => reason,
            Err(error) => return Done::fail(error),
        },
    };
    let Some(reason) = needed else {
        let mut done = Done::ok("no reboot required");
        done.skipped = true;
        return done;
    };
    if host.check {
        let mut done = Done::would(format!("would reboot: {reason}"));
        done.reboot_required = true;
        return done;
    }
    let wait = reboot.wait.map_or(DEFAULT_WAIT, |w| w.0);
    match reboot_and_wait(host, wait).await {
        Ok((took, log)) => {
            let still = required(host).await.ok().flatten();
            super::update::record_reboot(host, still.as_deref()).await;
            Done {
                changed: true,
                summary: format!("rebooted in {}s ({reason})", took.as_secs()),
                output: log.into_bytes(),
                rebooted: Some(took),
                reboot_required: still.is_some(),
                ..Done::default()
            }
        }
        Err(error) => Done::fail(error),
    }
}

/// Why the host needs a reboot, if it does.
pub async fn required(host: &HostRun<'_>) -> Result<Option<String>, StepError> {
    let probe =
        super::command(host, packages::REBOOT_PROBE, Duration::from_secs(60)).become_root(false);
    let output = super::exec(host, &probe).await?;
    Ok(packages::parse_reboot_probe(&output.stdout.text()))
}

async fn reboot_and_wait(
    host: &mut HostRun<'_>,
    wait: Duration,
) -> Result<(Duration, String), StepError> {
    let marker = format!("/run/nightshift-reboot-{}", std::process::id());
    let before = boot_id(host).await?;
    let prepare = super::command(host, format!("touch {marker}"), Duration::from_secs(30));
    let out = super::exec(host, &prepare).await?;
    if !out.status.success() {
        return Err(StepError::new(
            "reboot_failed",
            format!(
                "cannot leave the reboot marker {marker}: {}",
                out.stderr.text().trim()
            ),
        ));
    }
    let started = Instant::now();
    host.progress("rebooting");
    // The connection may drop before the command reports back: both are fine.
    let reboot = super::command(host, REBOOT, Duration::from_secs(30));
    if let Ok(out) = super::exec(host, &reboot).await
        && !out.status.success()
    {
        return Err(StepError::new(
            "reboot_failed",
            format!("the reboot command failed: {}", out.status),
        ));
    }
    if let Some(conn) = host.conn.take() {
        conn.close().await;
    }
    let mut log = format!("boot id before: {before}\n");
    let mut last = "no connection yet".to_string();
    let mut asked_again = false;
    loop {
        tokio::time::sleep(POLL).await;
        if started.elapsed() > wait {
            return Err(StepError::new(
                "reboot_timeout",
                format!(
                    "the host did not come back within {}s of the reboot (last look: {last})",
                    wait.as_secs()
                ),
            ));
        }
        host.progress(format!(
            "waiting for the host ({}s)",
            started.elapsed().as_secs()
        ));
        let conn = match connect(&host.target.reach, &host.env.ssh).await {
            Ok(conn) => conn,
            Err(err) => {
                last = err.to_string();
                continue;
            }
        };
        host.conn = Some(conn);
        let check = super::command(host, format!("test -e {marker}"), Duration::from_secs(30))
            .become_root(false);
        match super::exec(host, &check).await {
            // `test -e` says 1 only when it looked and found nothing; a
            // session the shutdown killed says something else.
            Ok(out) if out.status == nightshift_transport::ExitStatus::Code(1) => break,
            // Still up, marker in place, long after the reboot was asked
            // for: it never started. Ask once more, and say so.
            Ok(out) if out.status.success() && !asked_again && started.elapsed() > STILL_UP => {
                asked_again = true;
                last = "the marker was still there; the reboot was asked for again".into();
                log.push_str(&format!(
                    "still up after {}s: reboot asked for again\n",
                    started.elapsed().as_secs()
                ));
                let again = super::command(host, REBOOT, Duration::from_secs(30));
                let _ = super::exec(host, &again).await;
            }
            Ok(out) => last = format!("`test -e {marker}`: {}", out.status),
            Err(err) => last = err.message,
        }
        // Not down yet (or half up): let go and look again.
        if let Some(conn) = host.conn.take() {
            conn.close().await;
        }
    }
    let took = started.elapsed();
    let after = boot_id(host).await.unwrap_or_default();
    log.push_str(&format!(
        "boot id after: {after}\nback after {}s\n",
        took.as_secs()
    ));
    Ok((took, log))
}

async fn boot_id(host: &HostRun<'_>) -> Result<String, StepError> {
    let command = super::command(host, BOOT_ID, Duration::from_secs(30)).become_root(false);
    Ok(super::exec(host, &command)
        .await?
        .stdout
        .text()
        .trim()
        .to_string())
}
