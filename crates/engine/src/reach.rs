//! How each inventory host is reached: the local transport for the
//! controller itself, SSH (possibly through a bastion) for everything else.

use std::path::PathBuf;

use nightshift_plan::inventory::{Host as InventoryHost, Inventory};
use nightshift_transport::{Endpoint, Host, Local, Session, SshConfig, TransportError};

/// The way to one host.
#[derive(Debug, Clone)]
pub enum Reach {
    Local,
    Ssh(Endpoint),
}

#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("host `{0}` is not in the inventory")]
    UnknownHost(String),
    #[error("jump host `{jump}` of `{host}` is not `[user@]host[:port]` or an inventory host")]
    BadJump { host: String, jump: String },
}

/// Works out how to reach `name`. A host whose address is `localhost` (or
/// a host named `localhost` without one) uses the local transport.
pub fn reach(inventory: &Inventory, name: &str) -> Result<Reach, ReachError> {
    let host = inventory
        .hosts
        .get(name)
        .ok_or_else(|| ReachError::UnknownHost(name.to_string()))?;
    let address = host.address.clone().unwrap_or_else(|| name.to_string());
    if address == "localhost" && host.port.is_none() && host.jump.is_none() {
        return Ok(Reach::Local);
    }
    endpoint(inventory, name, host, address, 0).map(Reach::Ssh)
}

fn endpoint(
    inventory: &Inventory,
    name: &str,
    host: &InventoryHost,
    address: String,
    depth: usize,
) -> Result<Endpoint, ReachError> {
    let defaults = &inventory.defaults;
    let jump = host
        .jump
        .clone()
        .or_else(|| group_jump(inventory, host))
        .or_else(|| defaults.jump.clone());
    let jump = match jump {
        Some(spec) if depth < 4 => Some(Box::new(jump_endpoint(inventory, name, &spec, depth)?)),
        Some(spec) => {
            return Err(ReachError::BadJump {
                host: name.to_string(),
                jump: spec,
            });
        }
        None => None,
    };
    Ok(Endpoint {
        name: name.to_string(),
        address,
        port: host.port.or(defaults.port).unwrap_or(22),
        user: host
            .user
            .clone()
            .or_else(|| defaults.user.clone())
            .unwrap_or_else(current_user),
        identity: host.identity.clone().or_else(|| defaults.identity.clone()),
        jump,
    })
}

fn group_jump(inventory: &Inventory, host: &InventoryHost) -> Option<String> {
    host.groups.iter().find_map(|g| {
        inventory
            .groups
            .get(g.get_ref())
            .and_then(|g| g.jump.clone())
    })
}

/// A bastion: an inventory host by name, or `[user@]host[:port]` with the
/// inventory's defaults for the rest.
fn jump_endpoint(
    inventory: &Inventory,
    for_host: &str,
    spec: &str,
    depth: usize,
) -> Result<Endpoint, ReachError> {
    if let Some(host) = inventory.hosts.get(spec) {
        let address = host.address.clone().unwrap_or_else(|| spec.to_string());
        return endpoint(inventory, spec, host, address, depth + 1);
    }
    let bad = || ReachError::BadJump {
        host: for_host.to_string(),
        jump: spec.to_string(),
    };
    let (user, rest) = match spec.split_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, spec),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) => (address, port.parse().map_err(|_| bad())?),
        None => (rest, 22),
    };
    if address.is_empty() {
        return Err(bad());
    }
    let defaults = &inventory.defaults;
    Ok(Endpoint {
        name: spec.to_string(),
        address: address.to_string(),
        port,
        user: user
            .or_else(|| defaults.user.clone())
            .unwrap_or_else(current_user),
        identity: defaults.identity.clone(),
        jump: None,
    })
}

fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

/// Opens the way to a host.
pub async fn connect(reach: &Reach, config: &SshConfig) -> Result<Host, TransportError> {
    match reach {
        Reach::Local => Ok(Host::Local(Local)),
        Reach::Ssh(endpoint) => Session::connect(endpoint, config).await.map(Host::Ssh),
    }
}

/// The known_hosts files in force: nightshift's own under the data dir, and
/// the user's when the config asks for it.
pub fn known_hosts_files(
    data_dir: &std::path::Path,
    user_known_hosts: bool,
) -> (PathBuf, Vec<PathBuf>) {
    let own = data_dir.join("known_hosts");
    let mut others = Vec::new();
    if user_known_hosts && let Some(home) = std::env::var_os("HOME") {
        others.push(PathBuf::from(home).join(".ssh/known_hosts"));
    }
    (own, others)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        toml::from_str(
            r#"
            [defaults]
            user = "ops"
            [hosts.localhost]
            address = "localhost"
            [hosts.bastion]
            address = "192.0.2.1"
            port = 2222
            [hosts.web1]
            address = "10.0.0.1"
            groups = ["dmz"]
            [hosts.db1]
            address = "10.0.0.2"
            jump = "root@gate.example.org:2200"
            [groups.dmz]
            jump = "bastion"
            "#,
        )
        .expect("inventory")
    }

    #[test]
    fn localhost_goes_local_and_the_rest_over_ssh() {
        let inv = inventory();
        assert!(matches!(reach(&inv, "localhost"), Ok(Reach::Local)));
        let Ok(Reach::Ssh(web)) = reach(&inv, "web1") else {
            panic!("ssh")
        };
        assert_eq!(
            (web.address.as_str(), web.port, web.user.as_str()),
            ("10.0.0.1", 22, "ops")
        );
        let jump = web.jump.expect("group jump");
        assert_eq!((jump.address.as_str(), jump.port), ("192.0.2.1", 2222));
        let Ok(Reach::Ssh(db)) = reach(&inv, "db1") else {
            panic!("ssh")
        };
        let jump = db.jump.expect("host jump");
        assert_eq!(
            (jump.user.as_str(), jump.address.as_str(), jump.port),
            ("root", "gate.example.org", 2200)
        );
        assert!(matches!(
            reach(&inv, "nope"),
            Err(ReachError::UnknownHost(_))
        ));
    }
}
