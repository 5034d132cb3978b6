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
}
