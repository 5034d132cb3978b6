//! The hosts' package managers: the command lines nightshift runs and what
//! it reads from their output.
//!
//! An `update` step has to ask a host which upgrades it has, decide which of
//! them the playbook allows, apply exactly those without a prompt or a
//! replaced configuration file, check what got installed, and tell whether
//! the host now wants a reboot. nightshift is agentless, so all of that is
//! shell commands run through the transport (`/bin/sh -c`, optionally under
//! `sudo -n`) and text read back from their stdout. This module is that
//! knowledge and nothing else: it builds command lines and parses output,
//! runs nothing and keeps no state, so every parser is tested here on
//! recorded output of the real tools (see `fixtures/`).
//!
//! Four managers are supported: apt (Debian, Ubuntu; the one the test fleet
//! exercises for real), dnf (Fedora, RHEL and its rebuilds), zypper (SUSE)
//! and apk (Alpine). [`DETECT`] tells which one a host has.
//!
//! Every command runs with `LC_ALL=C`, since the parsers read English
//! output. Commands that can be told to never prompt are told so, and
//! commands whose tool reports "there are updates" through its exit code
//! fold that code into 0, so a non-zero exit always means failure.
//!
//! The policy side is [`select`]: `hold`, `deny` and `allow` patterns and
//! `security_only` from the playbook's `update` action decide which
//! upgrades are applied and say why the others are left.

mod apk;
mod apt;
mod dnf;
mod reboot;
mod version;
mod zypper;

use std::collections::BTreeMap;
use std::fmt;

use nightshift_plan::Update;
use nightshift_transport::shell_quote;

pub use reboot::{REBOOT_PROBE, parse_reboot_probe};
pub use version::compare_versions;

/// A host's package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Manager {
    /// `apt-get` and `dpkg` (Debian, Ubuntu).
    Apt,
    /// `dnf` and `rpm` (Fedora, RHEL, Rocky, Alma; dnf 4 and dnf 5).
    Dnf,
    /// `zypper` and `rpm` (SUSE Linux Enterprise, openSUSE).
    Zypper,
    /// `apk` (Alpine).
    Apk,
}

/// One shell snippet that prints the name of the host's package manager
/// (`apt-get`, `dnf`, `zypper` or `apk`, the first one found, in that order)
/// or nothing when it has none of them. It always exits 0. Read its output
/// with [`parse_detect`].
///
/// The sbin directories are added to `PATH` because a non-login shell of an
/// unprivileged user may not have them, and Alpine keeps `apk` in `/sbin`.
pub const DETECT: &str = r#"PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"; for m in apt-get dnf zypper apk; do if command -v "$m" >/dev/null 2>&1; then echo "$m"; exit 0; fi; done; exit 0"#;

/// Reads the output of [`DETECT`]: `None` when the host has no supported
/// package manager (or the output is not one of the names).
pub fn parse_detect(stdout: &str) -> Option<Manager> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    // Tolerate a path, as `command -v` itself would print.
    let name = line.rsplit('/').next().unwrap_or(line);
    match name {
        "apt-get" | "apt" => Some(Manager::Apt),
        "dnf" | "dnf5" => Some(Manager::Dnf),
        "zypper" => Some(Manager::Zypper),
        "apk" => Some(Manager::Apk),
        _ => None,
    }
}

/// One available upgrade (or, for apt, a new package an upgrade pulls in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The package name as the manager spells it on its command line; for
    /// apt, a package of a foreign architecture keeps its suffix
    /// (`libc6:i386`).
    pub name: String,
    /// The package's architecture, when the manager says (`amd64`, `all`,
    /// `x86_64`, `noarch`).
    pub arch: Option<String>,
    /// The installed version; `None` when the manager does not say (dnf) or
    /// the package is new (apt installs it as a dependency of an upgrade).
    pub from: Option<String>,
    /// The version the upgrade installs.
    pub to: String,
    /// Whether it comes from the distribution's security updates. Always
    /// `false` for apk, which has no such metadata.
    pub security: bool,
    /// Where it comes from: the apt suite (`bookworm-security`), the dnf
    /// repository id, the zypper repository name, or for apk the origin
    /// (source) package, since `apk list` does not name repositories.
    pub origin: String,
}

/// What [`select`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The upgrades to apply, in the order the manager listed them.
    pub apply: Vec<Upgrade>,
    /// The upgrades left alone, each with the reason: `"held"`, `"denied"`,
    /// `"not allowed"` or `"not a security update"`.
    pub left: Vec<(Upgrade, &'static str)>,
}

/// Output nightshift cannot read with confidence. Each message says what to
/// run by hand on the host to see why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// A line that should describe a package does not.
    #[error(
        "{manager}: cannot read `{line}` as {what}; run `{hint}` on the host (with LC_ALL=C) to see what it prints, and report the line if the format is new"
    )]
    Unreadable {
        manager: Manager,
        what: &'static str,
        line: String,
        hint: &'static str,
    },
    /// Output without the part every real run prints: cut short, or from
    /// another command.
    #[error(
        "{manager}: the output has no {what}, so it may be cut short or come from another command; run `{hint}` on the host (with LC_ALL=C) and check that it succeeds"
    )]
    Incomplete {
        manager: Manager,
        what: &'static str,
        hint: &'static str,
    },
    /// apt's summary line disagrees with the packages it listed.
    #[error(
        "apt: its summary counts {expected} packages to install or upgrade but it listed {found}; run `{hint}` on the host and compare"
    )]
    Miscounted {
        expected: usize,
        found: usize,
        hint: &'static str,
    },
    /// The upgrade would remove packages, which nightshift never does.
    #[error(
        "apt: the upgrade would remove {count} package(s){}; nightshift never removes packages: upgrade this host by hand, or hold the packages whose upgrade needs the removal",
        list_suffix(.packages)
    )]
    WouldRemove { count: usize, packages: Vec<String> },
}

fn list_suffix(packages: &[String]) -> String {
    if packages.is_empty() {
        String::new()
    } else {
        format!(" ({})", packages.join(", "))
    }
}

impl Manager {
    pub const ALL: [Manager; 4] = [Manager::Apt, Manager::Dnf, Manager::Zypper, Manager::Apk];

    /// The short name used in messages: `apt`, `dnf`, `zypper`, `apk`.
    pub fn name(&self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Zypper => "zypper",
            Manager::Apk => "apk",
        }
    }

    /// Refreshes the package lists from the repositories, without prompts.
    /// Needs root.
    pub fn refresh(&self) -> String {
        match self {
            Manager::Apt => apt::REFRESH,
            Manager::Dnf => dnf::REFRESH,
            Manager::Zypper => zypper::REFRESH,
            Manager::Apk => apk::REFRESH,
        }
        .to_string()
    }

    /// The command whose stdout [`Manager::parse_upgrades`] reads. It exits
    /// 0 when it could produce the list, whatever the list holds; dnf's and
    /// zypper's "updates are available" exit codes (100 to 103) are folded
    /// into 0 by the command itself, so the caller needs to accept 0 only.
    ///
    /// apt and dnf run it as any user; zypper needs root for its security
    /// part (a dry run of `zypper patch`).
    pub fn list_upgrades(&self) -> String {
        match self {
            Manager::Apt => apt::LIST,
            Manager::Dnf => dnf::LIST,
            Manager::Zypper => zypper::LIST,
            Manager::Apk => apk::LIST,
        }
        .to_string()
    }

    /// Reads the output of [`Manager::list_upgrades`].
    pub fn parse_upgrades(&self, stdout: &str) -> Result<Vec<Upgrade>, PackageError> {
        match self {
            Manager::Apt => apt::parse_upgrades(stdout),
            Manager::Dnf => dnf::parse_upgrades(stdout),
            Manager::Zypper => zypper::parse_upgrades(stdout),
            Manager::Apk => apk::parse_upgrades(stdout),
        }
    }

    /// Upgrades exactly these packages (and what they need), never
    /// prompting, keeping the host's changed configuration files, and never
    /// removing a package (apt). Names are shell-quoted; a name starting
    /// with `-` is left out, since no manager has such packages and it would
    /// read as an option. With no names the command does nothing.
    ///
    /// A held or denied package can still be upgraded when an applied one
    /// needs its newer version; only [`Manager::hold`] stops that. A new
    /// package in apt's list (`from: None`) is skipped by apt when named
    /// (it is not installed, and only upgrades are asked for) and comes in
    /// as a dependency of the upgrade that needs it.
    pub fn apply(&self, names: &[String]) -> String {
        let names = quoted(names);
        if names.is_empty() {
            return "true".to_string();
        }
        match self {
            Manager::Apt => apt::apply(&names),
            Manager::Dnf => dnf::apply(&names),
            Manager::Zypper => zypper::apply(&names),
            Manager::Apk => apk::apply(&names),
        }
    }

    /// Holds these packages in the package manager itself (`apt-mark hold`,
    /// `zypper addlock`), so that not even a dependency upgrade moves them.
    /// `None` where the manager has no built-in hold (dnf needs its
    /// versionlock plugin, apk pins through version constraints in
    /// `/etc/apk/world`); nightshift's own `hold` still applies there.
    /// Pass concrete names (say, the upgrades [`select`] left as "held"),
    /// not the playbook's patterns.
    pub fn hold(&self, names: &[String]) -> Option<String> {
        let names = quoted(names);
        if names.is_empty() {
            return None;
        }
        match self {
            Manager::Apt => Some(apt::hold(&names)),
            Manager::Zypper => Some(zypper::hold(&names)),
            Manager::Dnf | Manager::Apk => None,
        }
    }

    /// Prints the installed versions of these packages (all installed
    /// packages when `names` is empty), for [`Manager::parse_installed`].
    /// Packages that are not installed are left out of the output, and the
    /// command still exits 0 for them.
    pub fn installed(&self, names: &[String]) -> String {
        let names = quoted(names);
        match self {
            Manager::Apt => apt::installed(&names),
            Manager::Dnf | Manager::Zypper => rpm_installed(&names),
            Manager::Apk => apk::installed(&names),
        }
    }

    /// Reads the output of [`Manager::installed`]: package name (as in
    /// [`Upgrade::name`]) to installed version. Packages that are known but
    /// not properly installed (removed with their configuration kept, or
    /// half-configured after a failed upgrade) are left out.
    pub fn parse_installed(&self, stdout: &str) -> Result<BTreeMap<String, String>, PackageError> {
        match self {
            Manager::Apt => apt::parse_installed(stdout),
            Manager::Dnf | Manager::Zypper => parse_rpm_installed(*self, stdout),
            Manager::Apk => apk::parse_installed(stdout),
        }
    }
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decides which upgrades to apply under a playbook's `update` policy.
///
/// `hold`, `deny` and `allow` are glob patterns on package names
/// (`postgresql*`, `linux-image-?.*`); a pattern that is not a valid glob
/// matches only the identical name. A foreign-architecture apt name such as
/// `libc6:i386` is matched both whole and without its suffix. The first
/// rule that applies gives the reason: held, then denied, then not allowed
/// (when `allow` is not empty and no pattern matches), then not a security
/// update (with `security_only`).
pub fn select(upgrades: Vec<Upgrade>, policy: &Update) -> Selection {
    let hold = Patterns::new(&policy.hold);
    let deny = Patterns::new(&policy.deny);
    let allow = Patterns::new(&policy.allow);
    let mut selection = Selection::default();
    for upgrade in upgrades {
        let why = if hold.matches(&upgrade.name) {
            Some("held")
        } else if deny.matches(&upgrade.name) {
            Some("denied")
        } else if !allow.is_empty() && !allow.matches(&upgrade.name) {
            Some("not allowed")
        } else if policy.security_only && !upgrade.security {
            Some("not a security update")
        } else {
            None
        };
        match why {
            Some(why) => selection.left.push((upgrade, why)),
            None => selection.apply.push(upgrade),
        }
    }
    selection
}

struct Patterns<'a>(Vec<(&'a str, Option<glob::Pattern>)>);

impl<'a> Patterns<'a> {
    fn new(patterns: &'a [String]) -> Self {
        Self(
            patterns
                .iter()
                .map(|text| (text.as_str(), glob::Pattern::new(text).ok()))
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches(&self, name: &str) -> bool {
        let base = name.split_once(':').map(|(base, _)| base);
        self.0.iter().any(|(text, pattern)| {
            let one = |candidate: &str| match pattern {
                Some(pattern) => pattern.matches(candidate),
                None => *text == candidate,
            };
            one(name) || base.is_some_and(one)
        })
    }
}

/// The names, shell-quoted and space-separated, leaving out any that would
/// read as an option.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .filter(|name| !name.is_empty() && !name.starts_with('-'))
        .map(|name| shell_quote(name))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a token from a manager's output can be a package name: not empty,
/// not an option, no blanks or control characters.
fn plausible_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether a token can be a version: it starts with a digit, as every
/// dpkg, rpm and apk version (after any epoch) does, and has no blanks.
fn plausible_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && !version.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A line for an error message: at most 200 characters.
fn excerpt(line: &str) -> String {
    const MAX: usize = 200;
    let line = line.trim();
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// dnf and zypper hosts: `rpm -q`, which prints "package X is not
/// installed" on stdout for the missing ones and exits with their count;
/// that is folded into 0 (a broken rpm database then shows as packages not
/// installed). The epoch is printed only when the package has one.
fn rpm_installed(names: &str) -> String {
    let query = r"LC_ALL=C rpm -q --qf '%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n'";
    if names.is_empty() {
        format!("{query} -a")
    } else {
        format!("{query} {names} || true")
    }
}

/// Reads [`rpm_installed`]. Several installed versions of one name (kernels)
/// give the newest.
fn parse_rpm_installed(
    manager: Manager,
    stdout: &str,
) -> Result<BTreeMap<String, String>, PackageError> {
    let mut installed = BTreeMap::new();
    for line in stdout.lines() {
        if line.trim().is_empty()
            || (line.starts_with("package ") && line.ends_with(" is not installed"))
        {
            continue;
        }
        let (name, version) = line
            .split_once('\t')
            .filter(|(name, version)| plausible_name(name) && plausible_version(version.trim()))
            .ok_or_else(|| PackageError::Unreadable {
                manager,
                what: "`NAME<tab>VERSION` from rpm -q",
                line: excerpt(line),
                hint: "rpm -q --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' NAME",
            })?;
        keep_newest(&mut installed, name, version.trim());
    }
    Ok(installed)
}

fn keep_newest(map: &mut BTreeMap<String, String>, name: &str, version: &str) {
    match map.get(name) {
        Some(known) if compare_versions(known, version).is_ge() => {}
        _ => {
            map.insert(name.to_string(), version.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
