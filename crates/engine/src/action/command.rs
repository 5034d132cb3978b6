//! `command = "..."`: a shell command; it fails on a non-zero exit.

use std::time::Duration;

use crate::job::HostRun;
use crate::step::Done;

pub async fn run(host: &HostRun<'_>, line: &str, limit: Duration) -> Done {
    if host.check {
        return Done::would(format!("would run `{line}`"));
    }
    let command = super::command(host, line, limit);
    match super::exec(host, &command).await {
        Ok(output) => {
            let failed = !output.status.success();
            Done {
                failed,
                // A command is assumed to change something, as Ansible does.
                changed: !failed,
                summary: output.status.to_string(),
                output: super::log_of(&output),
                exit: Some(output.status),
                retryable: true,
                ..Done::default()
            }
        }
        Err(error) => Done::fail(error),
    }
}
