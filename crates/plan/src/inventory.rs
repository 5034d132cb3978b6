//! The inventory: which hosts exist, how to reach them, and how they group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// `inventory.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Connection settings every host inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Connection,
    #[serde(default)]
    pub hosts: BTreeMap<String, Host>,
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// A bastion to reach the host through, as `[user@]host[:port]`.
    #[serde(default)]
    pub jump: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Name or IP address; the host's inventory name when absent.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// A bastion to reach the host through, as `[user@]host[:port]`.
    #[serde(default)]
    pub jump: Option<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// This host's own maintenance window, by name.
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    #[serde(default)]
    pub backup: Option<BackupSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    /// A bastion for every host of the group, as `[user@]host[:port]` or an
    /// inventory host name.
    #[serde(default)]
    pub jump: Option<String>,
    #[serde(default)]
    pub children: Vec<Spanned<String>>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    #[serde(default)]
    pub backup: Option<BackupSettings>,
}

/// What to back up from a host by default, and how long to keep it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub keep_last: Option<u32>,
    #[serde(default)]
    pub keep_daily: Option<u32>,
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    #[serde(default)]
    pub keep_monthly: Option<u32>,
}

impl Inventory {
    /// The inventory when there is none: `localhost` alone.
    pub fn embedded() -> Self {
        let localhost = Host {
            address: Some("localhost".into()),
            user: None,
            port: None,
            identity: None,
            jump: None,
            groups: Vec::new(),
            vars: BTreeMap::new(),
            window: None,
            backup: None,
        };
        Self {
            defaults: Connection::default(),
            hosts: BTreeMap::from([("localhost".to_string(), localhost)]),
            groups: BTreeMap::new(),
        }
    }

    /// Every group name known, whether declared or only named by a host.
    pub fn group_names(&self) -> BTreeSet<&str> {
        let mut names: BTreeSet<&str> = self.groups.keys().map(String::as_str).collect();
        names.extend(
            self.hosts
                .values()
                .flat_map(|h| h.groups.iter().map(|g| g.get_ref().as_str())),
        );
        names
    }

    /// An index for resolving many targets against this inventory.
    pub fn targets(&self) -> Targets<'_> {
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, host) in &self.hosts {
            for group in &host.groups {
                direct.entry(group.get_ref()).or_default().push(name);
            }
        }
        for (name, group) in &self.groups {
            let members = group.members.iter().map(|m| m.get_ref().as_str());
            direct
                .entry(name)
                .or_default()
                .extend(members.filter(|m| self.hosts.contains_key(*m)));
        }
        Targets {
            inventory: self,
            direct,
        }
    }

    /// Resolves playbook targets; see [`Targets::resolve`].
    pub fn resolve<'a>(&'a self, targets: &[&str]) -> BTreeSet<&'a str> {
        self.targets().resolve(targets)
    }
}

/// Target resolution over an inventory, with each group's direct hosts
/// indexed once, so that thousands of hosts and hundreds of playbooks
/// resolve in milliseconds.
#[derive(Debug)]
pub struct Targets<'a> {
    inventory: &'a Inventory,
    /// Hosts that name a group, and the group's declared members.
    direct: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Targets<'a> {
    /// Resolves playbook targets: host names, `group:NAME`, globs (`web*`),
    /// `all`, and exclusions (`!db3`, `!group:NAME`). Exclusions win; a list
    /// of exclusions alone starts from every host.
    pub fn resolve(&self, targets: &[&str]) -> BTreeSet<&'a str> {
        let (exclude, include): (Vec<&str>, Vec<&str>) =
            targets.iter().partition(|t| t.starts_with('!'));
        let mut hosts = if include.is_empty() {
            self.all()
        } else {
            include.iter().flat_map(|t| self.matching(t)).collect()
        };
        for t in exclude {
            for h in self.matching(&t[1..]) {
                hosts.remove(h);
            }
        }
        hosts
    }

    fn all(&self) -> BTreeSet<&'a str> {
        self.inventory.hosts.keys().map(String::as_str).collect()
    }

    /// The hosts one target pattern (without `!`) names.
    pub fn matching(&self, target: &str) -> BTreeSet<&'a str> {
        if let Some(group) = target.strip_prefix("group:") {
            return self.group_hosts(group);
        }
        if target == "all" {
            return self.all();
        }
        match glob::Pattern::new(target) {
            Ok(pattern) if target.contains(['*', '?', '[']) => self.glob(target, &pattern),
            _ => self
                .inventory
                .hosts
                .get_key_value(target)
                .map(|(k, _)| k.as_str())
                .into_iter()
                .collect(),
        }
    }

    /// Hosts matching a glob, scanning only the names that share its
    /// literal prefix (hosts are kept sorted by name).
    fn glob(&self, target: &str, pattern: &glob::Pattern) -> BTreeSet<&'a str> {
        let prefix = &target[..target.find(['*', '?', '[']).unwrap_or(target.len())];
        self.inventory
            .hosts
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(name, _)| name.as_str())
            .take_while(|name| name.starts_with(prefix))
            .filter(|name| pattern.matches(name))
            .collect()
    }

    /// Every host in a group: its members, the hosts that name it, and the
    /// hosts of its child groups, however deep (cycles are cut).
    pub fn group_hosts(&self, group: &str) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        let mut hosts = BTreeSet::new();
        let mut todo = vec![group];
        while let Some(name) = todo.pop() {
            if !seen.insert(name) {
                continue;
            }
            hosts.extend(self.direct.get(name).into_iter().flatten().copied());
            if let Some(g) = self.inventory.groups.get(name) {
                todo.extend(g.children.iter().map(|c| c.get_ref().as_str()));
            }
        }
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        toml::from_str(
            r#"
            [hosts.web1]
            groups = ["web"]
            [hosts.web2]
            groups = ["web"]
            [hosts.db1]
            [hosts.db3]
            [groups.db]
            members = ["db1", "db3"]
            [groups.prod]
            children = ["web", "db"]
            "#,
        )
        .expect("inventory")
    }

    fn resolve(targets: &[&str]) -> Vec<String> {
        inventory()
            .resolve(targets)
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn targets_by_name_group_glob_and_exclusion() {
        assert_eq!(resolve(&["web1"]), ["web1"]);
        assert_eq!(resolve(&["group:web"]), ["web1", "web2"]);
        assert_eq!(resolve(&["group:prod", "!db3"]), ["db1", "web1", "web2"]);
        assert_eq!(resolve(&["db*"]), ["db1", "db3"]);
        assert_eq!(resolve(&["!group:web"]), ["db1", "db3"]);
        assert_eq!(resolve(&["all", "!web?"]), ["db1", "db3"]);
        assert!(resolve(&["nope"]).is_empty());
    }

    #[test]
    fn child_group_cycles_end() {
        let inv: Inventory = toml::from_str(
            "[hosts.a]\ngroups = [\"x\"]\n[groups.x]\nchildren = [\"y\"]\n[groups.y]\nchildren = [\"x\"]\n",
        )
        .expect("inventory");
        assert_eq!(
            inv.targets()
                .group_hosts("y")
                .into_iter()
                .collect::<Vec<_>>(),
            ["a"]
        );
    }
}
