//! Ad-hoc commands across hosts (`nightshift exec`): connect to each host,
//! run one command, report lines as they come and one result per host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_transport::{Command, Output, SshConfig, Stream, TransportError};
use tokio::sync::{Semaphore, mpsc};

use crate::reach::{Reach, connect};

/// What happens on a host, in the order it happens.
#[derive(Debug)]
pub enum Event {
    Line {
        host: String,
        stream: Stream,
        text: String,
    },
    Done(HostResult),
}

/// How the command went on one host.
#[derive(Debug)]
pub struct HostResult {
    pub host: String,
    pub elapsed: Duration,
    pub outcome: Result<Output, TransportError>,
}

impl HostResult {
    /// Ran and exited 0.
    pub fn ok(&self) -> bool {
        matches!(&self.outcome, Ok(out) if out.status.success())
    }
}

/// Runs `command` on every host, at most `forks` at once, sending events to
/// `events` as they happen. Returns when every host is done.
pub async fn run(
    hosts: Vec<(String, Reach)>,
    command: Command,
    config: SshConfig,
    forks: usize,
    events: mpsc::UnboundedSender<Event>,
) {
    let slots = Arc::new(Semaphore::new(forks.max(1)));
    let command = Arc::new(command);
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    for (name, reach) in hosts {
        let (slots, command, config, events) = (
            slots.clone(),
            command.clone(),
            config.clone(),
            events.clone(),
        );
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire().await else {
                return;
            };
            let started = Instant::now();
            let outcome = on_host(&name, &reach, &command, &config, &events).await;
            let _ = events.send(Event::Done(HostResult {
                host: name,
                elapsed: started.elapsed(),
                outcome,
            }));
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn on_host(
    name: &str,
    reach: &Reach,
    command: &Command,
    config: &SshConfig,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<Output, TransportError> {
    let host = connect(reach, config).await?;
    let mut on_line = |stream, text: &str| {
        let _ = events.send(Event::Line {
            host: name.to_string(),
            stream,
            text: text.to_string(),
        });
    };
    let outcome = host.exec(command, &mut on_line).await;
    host.close().await;
    outcome
}
