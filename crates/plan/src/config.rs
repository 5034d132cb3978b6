use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Diagnostic, PlanError, Source};

/// The file `nightshift` reads when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "nightshift.toml";

/// `nightshift.toml`: where the rest of the plan lives. Relative paths are
/// taken from the directory holding the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The inventory file; without one, the only host is `localhost`.
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    #[serde(default = "default_playbooks")]
    pub playbooks: PathBuf,
    #[serde(default = "default_schedules")]
    pub schedules: PathBuf,
    #[serde(default)]
    pub ssh: SshSettings,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub catalog: CatalogSettings,
    #[serde(default)]
    pub daemon: DaemonSettings,
    #[serde(default)]
    pub notify: NotifySettings,
    #[serde(default)]
    pub policy: PolicySettings,
    /// Hosts or groups exempted from a policy, with a reason and an expiry.
    #[serde(default, rename = "exception")]
    pub exceptions: Vec<Exception>,
}

/// `[policy]`: what the compliance report holds every host to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// No security update pending longer than this (since first seen).
    #[serde(default = "days::<14>")]
    pub patch_security: crate::Duration,
    /// No other update pending longer than this.
    #[serde(default = "days::<30>")]
    pub patch_other: crate::Duration,
    /// The last successful backup is younger than this.
    #[serde(default = "hours::<26>")]
    pub backup_rpo: crate::Duration,
    /// A successful restore test within this long.
    #[serde(default = "days::<7>")]
    pub restore_test: crate::Duration,
    /// A successful backup check within this long.
    #[serde(default = "days::<7>")]
    pub backup_check: crate::Duration,
    /// A needed reboot waits no longer than this.
    #[serde(default = "days::<7>")]
    pub reboot: crate::Duration,
    /// A job reached the host within this long.
    #[serde(default = "days::<2>")]
    pub last_seen: crate::Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            patch_security: days::<14>(),
            patch_other: days::<30>(),
            backup_rpo: hours::<26>(),
            restore_test: days::<7>(),
            backup_check: days::<7>(),
            reboot: days::<7>(),
            last_seen: days::<2>(),
        }
    }
}

fn days<const N: u64>() -> crate::Duration {
    hours_of(N * 24)
}

fn hours<const N: u64>() -> crate::Duration {
    hours_of(N)
}

fn hours_of(n: u64) -> crate::Duration {
    crate::Duration(std::time::Duration::from_secs(n * 3600))
}

/// The policies of `[policy]`, by the names exceptions and reports use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    PatchSecurity,
    PatchOther,
    BackupRpo,
    RestoreTest,
    BackupCheck,
    Reboot,
    LastSeen,
    /// Covered by at least one enabled schedule.
    Scheduled,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::PatchSecurity,
        Policy::PatchOther,
        Policy::BackupRpo,
        Policy::RestoreTest,
        Policy::BackupCheck,
        Policy::Reboot,
        Policy::LastSeen,
        Policy::Scheduled,
    ];

    /// The name in the config, the CSV and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::PatchSecurity => "patch_security",
            Self::PatchOther => "patch_other",
            Self::BackupRpo => "backup_rpo",
            Self::RestoreTest => "restore_test",
            Self::BackupCheck => "backup_check",
            Self::Reboot => "reboot",
            Self::LastSeen => "last_seen",
            Self::Scheduled => "scheduled",
        }
    }
}

/// `[[exception]]`: a host or a group exempted from some policies until a
/// date, for a reason a reader of the report will see.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    #[serde(default)]
    pub host: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub group: Option<toml::Spanned<String>>,
    pub policies: Vec<Policy>,
    pub reason: toml::Spanned<String>,
    /// The last day the exception counts (inclusive, on the controller's
    /// local calendar).
    #[serde(deserialize_with = "date")]
    pub expires: chrono::NaiveDate,
}

fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::NaiveDate, D::Error> {
    let value = toml::value::Datetime::deserialize(d)?;
    match (value.date, value.time) {
        (Some(date), None) => chrono::NaiveDate::from_ymd_opt(
            i32::from(date.year),
            u32::from(date.month),
            u32::from(date.day),
        )
        .ok_or_else(|| serde::de::Error::custom("not a calendar date")),
        _ => Err(serde::de::Error::custom(
            "`expires` is a date like 2027-01-31 (no time, no quotes)",
        )),
    }
}

/// What `nightshift daemon` does with fires it missed while it was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Record the missed fires and wait for the next one.
    #[default]
    Skip,
    /// Run once at start-up if the missed fire's window is still open.
    Once,
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Skip => "skip",
            Self::Once => "once",
        })
    }
}

/// `[daemon]`: how the scheduler runs playbooks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// When a window closes mid-run (or the daemon is asked to stop), steps
    /// in flight may finish within this long; after it they are cancelled.
    #[serde(default = "default_grace")]
    pub grace: crate::Duration,
    /// Missed fires: `skip` or `once`; a schedule may say otherwise.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Hosts worked on at once across all the daemon's runs.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            grace: default_grace(),
            catch_up: CatchUp::default(),
            max_hosts: default_max_hosts(),
        }
    }
}

fn default_grace() -> crate::Duration {
    crate::Duration(std::time::Duration::from_secs(10 * 60))
}

fn default_max_hosts() -> usize {
    100
}

/// `[notify]`: where the daemon reports failures, halts, deferred hosts
/// and window overruns.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// A URL that receives a JSON POST per event. It may hold a token, so
    /// nightshift never prints more of it than its scheme and host.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Give up on one attempt after this long.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: crate::Duration,
    /// Attempts after the first, with a doubling pause from 1 s.
    #[serde(default = "default_webhook_retries")]
    pub retries: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            webhook: None,
            timeout: default_webhook_timeout(),
            retries: default_webhook_retries(),
        }
    }
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a token.
        f.debug_struct("NotifySettings")
            .field("webhook", &self.webhook.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

fn default_webhook_timeout() -> crate::Duration {
    crate::Duration(std::time::Duration::from_secs(10))
}

fn default_webhook_retries() -> u32 {
    3
}

/// `[catalog]`: the SQLite record of runs under the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    /// How long steps' full output is kept; their first and last 4 KiB
    /// are kept forever.
    #[serde(default = "default_output_retention")]
    pub output_retention: crate::Duration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            output_retention: default_output_retention(),
        }
    }
}

fn default_output_retention() -> crate::Duration {
    crate::Duration(std::time::Duration::from_secs(90 * 24 * 3600))
}

/// `[store]`: the backup store under the data dir.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// A file holding the store's passphrase (keep it mode 0600). Without
    /// one, `NIGHTSHIFT_PASSPHRASE`, the data dir's generated `store.key`,
    /// or a prompt on a terminal.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[ssh]`: how nightshift connects to hosts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Give up on a host that has not completed the SSH handshake by then.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: crate::Duration,
    /// Also trust keys in the user's `~/.ssh/known_hosts` (nightshift's own
    /// file under the data dir is always read).
    #[serde(default)]
    pub user_known_hosts: bool,
    /// Hosts worked on at once.
    #[serde(default = "default_forks")]
    pub forks: usize,
    /// Commands running at once on one connection; keep it below sshd's
    /// `MaxSessions` (10 by default).
    #[serde(default = "default_channels")]
    pub channels_per_host: usize,
    /// A keepalive after this much silence; a host that answers none of
    /// `keepalive_max` in a row is lost (`connection_lost`).
    #[serde(default = "default_keepalive_interval")]
    pub keepalive_interval: crate::Duration,
    #[serde(default = "default_keepalive_max")]
    pub keepalive_max: usize,
}

fn default_keepalive_interval() -> crate::Duration {
    crate::Duration(std::time::Duration::from_secs(30))
}

fn default_keepalive_max() -> usize {
    10
}

fn default_connect_timeout() -> crate::Duration {
    crate::Duration(std::time::Duration::from_secs(10))
}

fn default_forks() -> usize {
    50
}

fn default_channels() -> usize {
    8
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            connect_timeout: default_connect_timeout(),
            user_known_hosts: false,
            forks: default_forks(),
            channels_per_host: default_channels(),
            keepalive_interval: default_keepalive_interval(),
            keepalive_max: default_keepalive_max(),
        }
    }
}

fn default_playbooks() -> PathBuf {
    PathBuf::from("playbooks")
}

fn default_schedules() -> PathBuf {
    PathBuf::from("schedules")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            inventory: None,
            store: StoreSettings::default(),
            playbooks: default_playbooks(),
            schedules: default_schedules(),
            ssh: SshSettings::default(),
            catalog: CatalogSettings::default(),
            daemon: DaemonSettings::default(),
            notify: NotifySettings::default(),
            policy: PolicySettings::default(),
            exceptions: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a config file, resolving its paths against the file's directory.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let source = Source::read(path)?;
        let config: Self = source.parse().map_err(PlanError::Invalid)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(config.resolved(base))
    }

    /// Parses config text; errors carry the given path.
    pub fn parse(source: &Source) -> Result<Self, Box<Diagnostic>> {
        source.parse()
    }

    fn resolved(self, base: &Path) -> Self {
        Self {
            inventory: self.inventory.map(|p| base.join(p)),
            playbooks: base.join(self.playbooks),
            schedules: base.join(self.schedules),
            ssh: self.ssh,
            store: StoreSettings {
                key_file: self.store.key_file.map(|p| base.join(p)),
            },
            catalog: self.catalog,
            daemon: self.daemon,
            notify: self.notify,
            policy: self.policy,
            exceptions: self.exceptions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let config = Config::parse(&Source::new("n.toml", "")).expect("empty config is valid");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_key_names_place_and_suggestion() {
        let source = Source::new("n.toml", "playbooks = \"p\"\ninventroy = \"i.toml\"\n");
        let diagnostic = Config::parse(&source).expect_err("unknown key");
        assert_eq!((diagnostic.line, diagnostic.column), (2, 1));
        assert_eq!(diagnostic.message, "unknown key `inventroy`");
        assert_eq!(
            diagnostic.help.as_deref(),
            Some("did you mean `inventory`?")
        );
    }

    #[test]
    fn daemon_and_notify_settings_read_with_their_defaults() {
        let text = "[daemon]\ngrace = \"5m\"\ncatch_up = \"once\"\n[notify]\nwebhook = \"https://hooks.example/T0K3N\"\n";
        let config = Config::parse(&Source::new("n.toml", text)).expect("valid");
        assert_eq!(config.daemon.grace.0.as_secs(), 300);
        assert_eq!(config.daemon.catch_up, CatchUp::Once);
        assert_eq!(config.daemon.max_hosts, 100);
        assert_eq!(config.notify.retries, 3);
        assert_eq!(config.notify.timeout.0.as_secs(), 10);
    }

    #[test]
    fn a_catch_up_policy_that_is_neither_skip_nor_once_is_placed() {
        let source = Source::new("n.toml", "[daemon]\ncatch_up = \"always\"\n");
        let diagnostic = Config::parse(&source).expect_err("bad policy");
        assert_eq!((diagnostic.line, diagnostic.column), (2, 12));
        assert!(
            diagnostic.message.contains("always"),
            "{}",
            diagnostic.message
        );
    }
}
