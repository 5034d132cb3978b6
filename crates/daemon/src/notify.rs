//! Notifications: a JSON POST to the configured webhook when a run fails
//! or halts, when hosts are deferred to their window, and when a window
//! closes on a run still going. Each is sent in the background, retried
//! with a doubling pause, and never holds up the schedule. The URL may
//! carry a token, so logs show its scheme and host only.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::DaemonError;

/// What happened, as the payload's `event` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    RunFailed,
    RunHalted,
    HostsDeferred,
    WindowOverrun,
}

/// One host named in a notice.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeHost {
    pub host: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The webhook's payload (documented in the README).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub event: NoticeKind,
    pub run: Option<i64>,
    pub playbook: String,
    /// The run's status at the time: running, failed, halted, interrupted, ok.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub hosts: Vec<NoticeHost>,
    /// RFC 3339, UTC.
    pub at: String,
    /// The machine the daemon runs on.
    pub controller: String,
}

impl Notice {
    pub fn new(event: NoticeKind, playbook: &str, status: &str) -> Self {
        Self {
            event,
            run: None,
            playbook: playbook.to_string(),
            status: status.to_string(),
            reason: None,
            window: None,
            hosts: Vec::new(),
            at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            controller: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// Where notices go; without a webhook, nowhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Clone)]
struct Target {
    url: reqwest::Url,
    client: reqwest::Client,
    retries: u32,
}

impl Notifier {
    pub fn new(settings: &nightshift_plan::NotifySettings) -> Result<Self, DaemonError> {
        let Some(url) = &settings.webhook else {
            return Ok(Self { target: None });
        };
        let url =
            reqwest::Url::parse(url).map_err(|err| DaemonError::WebhookUrl(err.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DaemonError::WebhookScheme(url.scheme().to_string()));
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout.0)
            .user_agent(concat!("nightshift/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(DaemonError::WebhookClient)?;
        Ok(Self {
            target: Some(Target {
                url,
                client,
                retries: settings.retries,
            }),
        })
    }

    /// Sends `notice` in the background.
    pub fn send(&self, notice: Notice) {
        let Some(target) = self.target.clone() else {
            return;
        };
        tokio::spawn(async move { target.deliver(&notice).await });
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.shown())
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The URL as logs may show it: scheme and host, never path or query.
    fn shown(&self) -> String {
        format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or("?")
        )
    }

    async fn deliver(&self, notice: &Notice) {
        let mut pause = Duration::from_secs(1);
        for attempt in 0..=self.retries {
            let sent = self.client.post(self.url.clone()).json(notice).send().await;
            let why = match sent {
                Ok(reply) if reply.status().is_success() => {
                    tracing::info!(webhook = %self.shown(), event = ?notice.event, "notified");
                    return;
                }
                Ok(reply) => format!("it answered {}", reply.status()),
                // Without the URL: reqwest's error text names it whole.
                Err(err) => describe(&err),
            };
            tracing::warn!(webhook = %self.shown(), attempt = attempt + 1, "the webhook failed: {why}");
            if attempt < self.retries {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(Duration::from_secs(300));
            }
        }
        tracing::error!(webhook = %self.shown(), event = ?notice.event, "giving up on a notification after {} attempts", self.retries + 1);
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "it did not answer in time".into()
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        "the request failed".into()
    }
}
