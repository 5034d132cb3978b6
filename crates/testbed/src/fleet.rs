use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::Deserialize;

/// The environment variable that names a running shared fleet's manifest.
pub const FLEET_ENV: &str = "NIGHTSHIFT_FLEET";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "no fleet: {FLEET_ENV} is not set. Fleet tests run through tests/run, which builds and starts the fleet (Docker and root needed)"
    )]
    NotRunning,
    #[error("cannot read the fleet manifest {path}: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("cannot run {script}: {source}")]
    Spawn {
        script: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed:\n{detail}")]
    Script { command: String, detail: String },
    #[error("fleet `{fleet}` has no host `{host}`")]
    NoSuchHost { fleet: String, host: String },
}

/// What `tests/fleet/up` writes about a running fleet.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub network: String,
    pub subnet: String,
    /// The admin user on every host, with passwordless sudo.
    pub user: String,
    /// The private key every host accepts for `user`.
    pub identity: PathBuf,
    /// An OpenSSH known_hosts file holding every host's keys, read from the
    /// containers themselves.
    pub known_hosts: PathBuf,
    /// A file copied to every host, so backups have data in common.
    pub shared_file: PathBuf,
    pub hosts: Vec<FleetHost>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FleetHost {
    pub name: String,
    pub container: String,
    pub address: IpAddr,
    pub port: u16,
}

/// A running fleet of Debian hosts in Docker. The shared fleet is started by
/// `tests/run` and outlives the tests; a private one from [`Fleet::up`] is
/// torn down when dropped, whether the test passed or not.
#[derive(Debug)]
pub struct Fleet {
    manifest: Manifest,
    owned: bool,
}

impl Fleet {
    /// The shared fleet named by `NIGHTSHIFT_FLEET`.
    pub fn shared() -> Result<Self, FleetError> {
        let path = std::env::var_os(FLEET_ENV).ok_or(FleetError::NotRunning)?;
        Ok(Self {
            manifest: read_manifest(Path::new(&path))?,
            owned: false,
        })
    }

    /// Starts a private fleet of `hosts` hosts for a test that is unkind to
    /// its machines. `name` must be unique among running fleets.
    pub fn up(name: &str, hosts: usize) -> Result<Self, FleetError> {
        let name = format!("{name}-{}", std::process::id());
        let started = script("up", &[&name, &hosts.to_string()]).and_then(|output| {
            let path = crate::stdout(&output).trim().to_string();
            read_manifest(Path::new(&path))
        });
        match started {
            Ok(manifest) => Ok(Self {
                manifest,
                owned: true,
            }),
            Err(err) => {
                // Whatever `up` created before failing goes too.
                let _ = script("down", &[&name]);
                Err(err)
            }
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn hosts(&self) -> &[FleetHost] {
        &self.manifest.hosts
    }

    pub fn host(&self, name: &str) -> Result<&FleetHost, FleetError> {
        self.manifest
            .hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| FleetError::NoSuchHost {
                fleet: self.manifest.name.clone(),
                host: name.to_string(),
            })
    }

    /// Runs `command` on `host` with OpenSSH's client, strict host-key
    /// checking and a connect timeout.
    pub fn ssh(
        &self,
        host: &str,
        command: &str,
        connect_timeout: Duration,
    ) -> Result<Output, FleetError> {
        let host = self.host(host)?;
        let manifest = &self.manifest;
        let destination = format!("{}@{}", manifest.user, host.address);
        crate::openssh(&manifest.known_hosts, &manifest.identity, host.port)
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                connect_timeout.as_secs().max(1)
            ))
            .arg(destination)
            .arg(command)
            .output()
            .map_err(|source| FleetError::Spawn {
                script: "ssh".into(),
                source,
            })
    }

    /// Powers the host off (`docker stop`).
    pub fn stop(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "stop", None)
    }

    /// Powers the host on and waits for sshd.
    pub fn start(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "start", None)
    }

    /// Freezes every process on the host: connections hang.
    pub fn pause(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "pause", None)
    }

    pub fn unpause(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "unpause", None)
    }

    /// Cuts the host off the fleet network.
    pub fn disconnect(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "disconnect", None)
    }

    /// Plugs the host back in at its own address.
    pub fn reconnect(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "reconnect", None)
    }

    /// Reboots the host the way `reboot` does and waits for sshd.
    pub fn reboot(&self, host: &str) -> Result<(), FleetError> {
        self.ctl(host, "reboot", None)
    }

    /// Fills the filesystem holding `path` (`/srv` or
    /// `/var/cache/apt/archives`) until no byte is left.
    pub fn fill_disk(&self, host: &str, path: &str) -> Result<(), FleetError> {
        self.ctl(host, "fill-disk", Some(path))
    }

    pub fn free_disk(&self, host: &str, path: &str) -> Result<(), FleetError> {
        self.ctl(host, "free-disk", Some(path))
    }

    fn ctl(&self, host: &str, action: &str, arg: Option<&str>) -> Result<(), FleetError> {
        self.host(host)?;
        let mut args = vec![self.manifest.name.as_str(), host, action];
        args.extend(arg);
        script("ctl", &args).map(drop)
    }
}

impl Drop for Fleet {
    #[allow(
        clippy::print_stderr,
        reason = "a fleet left running is worth a line in the test's output, and drop returns nothing"
    )]
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Err(err) = script("down", &[&self.manifest.name]) {
            eprintln!(
                "warning: fleet `{}` not torn down: {err}",
                self.manifest.name
            );
        }
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, FleetError> {
    let text = std::fs::read_to_string(path).map_err(|err| FleetError::Manifest {
        path: path.to_path_buf(),
        detail: err.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|err| FleetError::Manifest {
        path: path.to_path_buf(),
        detail: err.to_string(),
    })
}

fn script(name: &str, args: &[&str]) -> Result<Output, FleetError> {
    let path = crate::repo_root().join("tests/fleet").join(name);
    let output = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| FleetError::Spawn {
            script: path.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(FleetError::Script {
            command: format!("tests/fleet/{name} {}", args.join(" ")),
            detail: crate::describe(&output),
        });
    }
    Ok(output)
}
