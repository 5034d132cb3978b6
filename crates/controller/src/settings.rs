//! Which configuration applies, where the controller's data lives, and the
//! SSH settings runs use.

use std::path::{Path, PathBuf};

use nightshift_plan::{Config, DEFAULT_CONFIG_FILE, Plan, PlanError};
use nightshift_store::StoreError;
use nightshift_transport::{KnownHosts, SshConfig};

/// The variable an encrypted SSH identity's passphrase is read from.
const SSH_PASSPHRASE_ENV: &str = "NIGHTSHIFT_SSH_PASSPHRASE";

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "config file {} does not exist; drop --config to use ./{DEFAULT_CONFIG_FILE} or the built-in defaults",
        .0.display()
    )]
    NoConfigFile(PathBuf),
    #[error("cannot load the config")]
    Config(#[source] PlanError),
    #[error("creating {}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}", path.display())]
    KnownHosts {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the store key file {}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating the store key file {}", path.display())]
    MakingKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store key file {} is empty", .0.display())]
    EmptyKeyFile(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configuration that applies, and where data lives.
#[derive(Debug)]
pub struct Settings {
    /// The config file read, or `None` for built-in defaults.
    pub config_file: Option<PathBuf>,
    pub config: Config,
    pub data_dir: PathBuf,
}

impl Settings {
    /// The config file given, or `./nightshift.toml` when there is one,
    /// or the built-in defaults.
    pub fn resolve(config_file: Option<&Path>, data_dir: PathBuf) -> Result<Self, ControllerError> {
        let config_file = match config_file {
            Some(path) if !path.is_file() => {
                return Err(ControllerError::NoConfigFile(path.to_path_buf()));
            }
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        Self::read(config_file, data_dir)
    }

    /// Exactly this config file (or the defaults), as a reload reads it.
    pub fn read(config_file: Option<PathBuf>, data_dir: PathBuf) -> Result<Self, ControllerError> {
        let config = match &config_file {
            Some(path) => Config::load(path).map_err(ControllerError::Config)?,
            None => Config::default(),
        };
        Ok(Self {
            config_file,
            config,
            data_dir,
        })
    }

    /// The plan the config names, checked whole: a plan with any problem
    /// is refused with every diagnostic `nightshift check` shows, so
    /// nothing runs that the check refuses.
    pub fn plan(&self) -> Result<Plan, PlanError> {
        nightshift_plan::load(self.config_file.as_deref(), &self.config)
    }

    /// Creates the data dir if it is missing, readable by its owner alone.
    pub fn ensure_data_dir(&self) -> Result<&Path, ControllerError> {
        private_data_dir(&self.data_dir).map_err(|source| ControllerError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        Ok(&self.data_dir)
    }

    /// SSH settings for a run: the known hosts read afresh (so a key
    /// trusted since is seen), timeouts and limits from the config, and
    /// the passphrase of an encrypted identity from
    /// `NIGHTSHIFT_SSH_PASSPHRASE` when it is set.
    pub fn ssh_config(&self) -> Result<SshConfig, ControllerError> {
        let ssh = &self.config.ssh;
        let (own, others) =
            nightshift_engine::reach::known_hosts_files(&self.data_dir, ssh.user_known_hosts);
        let known = KnownHosts::load(&own, &others)
            .map_err(|source| ControllerError::KnownHosts { path: own, source })?;
        let mut config = SshConfig::new(known);
        config.connect_timeout = ssh.connect_timeout.0;
        config.channels_per_host = ssh.channels_per_host;
        config.keepalive_interval = ssh.keepalive_interval.0;
        config.keepalive_max = ssh.keepalive_max;
        config.passphrase = std::env::var(SSH_PASSPHRASE_ENV).ok();
        Ok(config)
    }
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
            tracing::warn!(
                "the data dir {} can be read by other users (mode {mode:o}): its catalog and store hold your fleet's files and logs; run `chmod 700 {}`",
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
