use std::path::{Path, PathBuf};

use anyhow::Context;
use nightshift_plan::{Config, DEFAULT_CONFIG_FILE};

use crate::cli::Global;

/// The global options resolved: which config applies, and where data lives.
#[derive(Debug)]
pub struct Settings {
    /// The config file read, or `None` for built-in defaults.
    pub config_file: Option<PathBuf>,
    pub config: Config,
    pub data_dir: PathBuf,
}

impl Settings {
    pub fn resolve(global: &Global) -> anyhow::Result<Self> {
        let config_file = match &global.config {
            Some(path) => {
                anyhow::ensure!(
                    path.is_file(),
                    "config file {} does not exist; drop --config to use ./{DEFAULT_CONFIG_FILE} or the built-in defaults",
                    path.display()
                );
                Some(path.clone())
            }
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let config = match &config_file {
            Some(path) => load(path)?,
            None => Config::default(),
        };
        Ok(Self {
            config_file,
            config,
            data_dir: global.data_dir.clone(),
        })
    }
}

impl Settings {
    /// Creates the data dir if it is missing, readable by its owner alone.
    pub fn ensure_data_dir(&self) -> anyhow::Result<&Path> {
        private_data_dir(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        Ok(&self.data_dir)
    }

    /// SSH settings for this run: known_hosts under the data dir, timeouts
    /// and limits from the config, and the passphrase of an encrypted
    /// identity file from `NIGHTSHIFT_SSH_PASSPHRASE` or, on a terminal, a
    /// prompt.
    pub fn ssh_config(
        &self,
        inventory: &nightshift_plan::inventory::Inventory,
    ) -> anyhow::Result<nightshift_transport::SshConfig> {
        let ssh = &self.config.ssh;
        let (own, others) =
            nightshift_engine::reach::known_hosts_files(&self.data_dir, ssh.user_known_hosts);
        let known = nightshift_transport::KnownHosts::load(&own, &others)
            .with_context(|| format!("cannot read {}", own.display()))?;
        let mut config = nightshift_transport::SshConfig::new(known);
        config.connect_timeout = ssh.connect_timeout.0;
        config.channels_per_host = ssh.channels_per_host;
        config.keepalive_interval = ssh.keepalive_interval.0;
        config.keepalive_max = ssh.keepalive_max;
        config.passphrase = match std::env::var("NIGHTSHIFT_SSH_PASSPHRASE") {
            Ok(passphrase) => Some(passphrase),
            Err(_) => prompt_passphrase(inventory)?,
        };
        Ok(config)
    }

    /// The plan the config names, checked whole: a plan with any problem
    /// is refused with every diagnostic `nightshift check` shows (`main`
    /// prints them and exits with status 2), so nothing runs that the
    /// check refuses.
    pub fn plan(&self) -> Result<nightshift_plan::Plan, nightshift_plan::PlanError> {
        nightshift_plan::load(self.config_file.as_deref(), &self.config)
    }
}

/// Asks for the passphrase of the first encrypted identity file the
/// inventory names, when there is a terminal to ask on.
fn prompt_passphrase(
    inventory: &nightshift_plan::inventory::Inventory,
) -> anyhow::Result<Option<String>> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let identities = inventory
        .hosts
        .values()
        .filter_map(|h| h.identity.as_ref())
        .chain(inventory.defaults.identity.as_ref());
    let mut seen = std::collections::BTreeSet::new();
    for path in identities.filter(|p| seen.insert(p.to_path_buf())) {
        if nightshift_transport::key_is_encrypted(path) {
            let prompt = format!("Passphrase for {}: ", path.display());
            return Ok(Some(rpassword::prompt_password(prompt)?));
        }
    }
    Ok(None)
}

/// Creates `path` (and any missing parent) with mode 0700 whatever the
/// umask: the catalog and the store hold a fleet's files, logs and audit.
/// A data dir others can read is used, with one warning naming the fix.
pub fn private_data_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "warning: the data dir {} can be read by other users (mode {mode:o}): its catalog and store hold your fleet's files and logs; run `chmod 700 {}`",
                path.display(),
                path.display()
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

fn load(path: &Path) -> anyhow::Result<Config> {
    match Config::load(path) {
        Ok(config) => Ok(config),
        Err(err @ nightshift_plan::PlanError::Invalid(_)) => Err(err.into()),
        Err(err) => Err(err).context("cannot load the config"),
    }
}
