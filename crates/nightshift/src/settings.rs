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
    /// The plan the config names, refusing to go on while it has problems.
    pub fn load_plan(&self) -> anyhow::Result<nightshift_plan::Plan> {
        let (plan, mut report) =
            nightshift_plan::load(self.config_file.as_deref(), &self.config, &[])?;
        if report.is_clean() {
            report.diagnostics = nightshift_plan::validate(&plan);
        }
        for diagnostic in &report.diagnostics {
            eprintln!("{diagnostic}");
        }
        anyhow::ensure!(
            report.is_clean(),
            "the plan has {} problem(s); fix them first (`nightshift check` lists them)",
            report.diagnostics.len()
        );
        Ok(plan)
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    match Config::load(path) {
        Ok(config) => Ok(config),
        Err(nightshift_plan::PlanError::Invalid(diagnostic)) => {
            eprint!("{diagnostic}");
            anyhow::bail!("the config file {} is invalid", path.display())
        }
        Err(err) => Err(err).context("cannot load the config"),
    }
}
