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
    pub keep_hourly: Option<u32>,
    #[serde(default)]
    pub keep_daily: Option<u32>,
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    #[serde(default)]
    pub keep_within: Option<crate::Duration>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
}

impl BackupSettings {
    /// The retention rules these settings state.
    pub fn retention(&self) -> Retention {
        Retention {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_tags: self.keep_tags.clone(),
        }
    }
}

/// A retention policy as the inventory states it, restic's rules: keep the
/// newest N, the newest of each of the last N hours, days, ISO weeks,
/// months, years, everything within a span of the newest, and tagged ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<crate::Duration>,
    pub keep_tags: Vec<String>,
}

impl Retention {
    /// Whether the policy states any rule at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The more generous of two policies, rule by rule: a host in two
    /// groups never loses a snapshot because of the second.
    fn widen(self, other: &Self) -> Self {
        let max = |a: Option<u32>, b: Option<u32>| a.max(b);
        let mut tags = self.keep_tags;
        tags.extend(other.keep_tags.iter().cloned());
        tags.sort();
        tags.dedup();
        Self {
            keep_last: max(self.keep_last, other.keep_last),
            keep_hourly: max(self.keep_hourly, other.keep_hourly),
            keep_daily: max(self.keep_daily, other.keep_daily),
            keep_weekly: max(self.keep_weekly, other.keep_weekly),
            keep_monthly: max(self.keep_monthly, other.keep_monthly),
            keep_yearly: max(self.keep_yearly, other.keep_yearly),
            keep_within: self.keep_within.max(other.keep_within),
            keep_tags: tags,
        }
    }
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

    /// A host's retention policy: its own when it states one, else the
    /// most generous merge of the policies of every group it is in
    /// (directly or through child groups). `None` when nothing applies.
    pub fn retention(&self, host: &str) -> Option<Retention> {
        let own = self
            .hosts
            .get(host)?
            .backup
            .as_ref()
            .map(BackupSettings::retention);
        if let Some(own) = own.filter(|r| !r.is_empty()) {
            return Some(own);
        }
        let targets = self.targets();
        self.groups
            .iter()
            .filter(|(name, _)| targets.group_hosts(name).contains(host))
            .filter_map(|(_, group)| group.backup.as_ref().map(BackupSettings::retention))
            .filter(|r| !r.is_empty())
            .reduce(|merged, r| merged.widen(&r))
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
    fn retention_is_the_hosts_own_or_the_widest_of_its_groups() {
        let inventory: Inventory = toml::from_str(
            r#"
            [hosts.web1]
            groups = ["web", "frontline"]
            [hosts.db1]
            groups = ["web"]
            backup = { keep_last = 2 }
            [hosts.lone]
            [groups.web]
            backup = { keep_daily = 7, keep_weekly = 4, keep_tags = ["pre-upgrade"] }
            [groups.frontline]
            backup = { keep_daily = 14, keep_within = "2d", keep_tags = ["audit"] }
            "#,
        )
        .expect("inventory");
        let web1 = inventory.retention("web1").expect("a policy");
        assert_eq!(web1.keep_daily, Some(14), "the more generous group wins");
        assert_eq!(web1.keep_weekly, Some(4));
        assert_eq!(web1.keep_tags, ["audit", "pre-upgrade"]);
        assert_eq!(web1.keep_within.map(|d| d.0.as_secs()), Some(2 * 86400));
        let db1 = inventory.retention("db1").expect("its own");
        assert_eq!(
            (db1.keep_last, db1.keep_daily),
            (Some(2), None),
            "a host's own policy wins"
        );
        assert_eq!(inventory.retention("lone"), None);
        assert_eq!(inventory.retention("unknown"), None);
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
