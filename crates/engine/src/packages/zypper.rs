//! zypper and rpm.
//!
//! `zypper list-updates` tells nothing about security: SUSE ships security
//! fixes as patches of category `security`, and a patch names packages, not
//! the other way round. So [`LIST`] prints the `list-updates` table, then
//! the plan of `zypper patch --category security --dry-run`, whose
//! "packages are going to be upgraded" list says which of the updates the
//! security patches bring. That dry run needs root (run the step with
//! `become`). When an update of zypper itself is pending, zypper plans that
//! patch alone first, so the security list is incomplete until it is
//! applied. zypper's informational exit codes (100 to 103: updates,
//! security updates, reboot or restart needed) are folded into 0.

use std::collections::BTreeSet;

use super::{Manager, PackageError, Upgrade, excerpt, plausible_name, plausible_version};

pub(super) const REFRESH: &str = "LC_ALL=C zypper --non-interactive --quiet refresh";

pub(super) const SECURITY_MARK: &str = "@nightshift-security@";

pub(super) const LIST: &str = concat!(
    r#"LC_ALL=C zypper --non-interactive --quiet list-updates; rc=$?; case "$rc" in 0|100|101|102|103) ;; *) exit "$rc";; esac; "#,
    "echo '@nightshift-security@'; ",
    r#"LC_ALL=C zypper --non-interactive patch --category security --dry-run; rc=$?; case "$rc" in 0|100|101|102|103) exit 0;; *) exit "$rc";; esac"#,
);

const HINT: &str = "zypper --quiet list-updates";

/// `update NAMES` upgrades only those (and what they need); rpm keeps
/// changed configuration files by itself (`.rpmnew`, `.rpmsave`).
pub(super) fn apply(names: &str) -> String {
    format!("LC_ALL=C zypper --non-interactive update --auto-agree-with-licenses {names}")
}

pub(super) fn hold(names: &str) -> String {
    format!("LC_ALL=C zypper --non-interactive addlock {names}")
}

/// What zypper prints around its table when it is not fully quiet.
const NOTICES: [&str; 6] = [
    "Loading repository data...",
    "Reading installed packages...",
    "No updates found.",
    "Refreshing service",
    "Retrieving repository",
    "Building repository",
];

pub(super) fn parse_upgrades(stdout: &str) -> Result<Vec<Upgrade>, PackageError> {
    let (table, plan) = match stdout.split_once(&format!("\n{SECURITY_MARK}")) {
        Some(parts) => parts,
        None => match stdout.strip_prefix(SECURITY_MARK) {
            Some(plan) => ("", plan),
            None => {
                return Err(PackageError::Incomplete {
                    manager: Manager::Zypper,
                    what: "security plan (the line `@nightshift-security@` that separates it)",
                    hint: "zypper patch --category security --dry-run",
                });
            }
        },
    };
    let security = security_packages(plan);
    let mut columns: Option<Columns> = None;
    let mut upgrades = Vec::new();
    for line in table.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.chars().all(|c| c == '-' || c == '+') {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let unreadable = || PackageError::Unreadable {
            manager: Manager::Zypper,
            what: "a row of the list-updates table",
            line: excerpt(line),
            hint: HINT,
        };
        match &columns {
            None if cells.len() > 1 => {
                columns = Some(Columns::from_header(&cells).ok_or_else(unreadable)?)
            }
            None if NOTICES.iter().any(|notice| trimmed.starts_with(notice)) => {}
            None => {
                return Err(PackageError::Incomplete {
                    manager: Manager::Zypper,
                    what: "list-updates table",
                    hint: HINT,
                });
            }
            Some(columns) => {
                let row = columns.read(&cells).ok_or_else(unreadable)?;
                let security = security.contains(row.name)
                    || security.contains(format!("{}-{}", row.name, row.to).as_str());
                upgrades.push(Upgrade {
                    name: row.name.to_string(),
                    arch: row.arch.map(str::to_string),
                    from: row.from.map(str::to_string),
                    to: row.to.to_string(),
                    security,
                    origin: row.repository.to_string(),
                });
            }
        }
    }
    Ok(upgrades)
}

/// Where each column is, from the header `S | Repository | Name | Current
/// Version | Available Version | Arch`.
struct Columns {
    count: usize,
    repository: usize,
    name: usize,
    current: Option<usize>,
    available: usize,
    arch: Option<usize>,
}

struct Row<'a> {
    repository: &'a str,
    name: &'a str,
    from: Option<&'a str>,
    to: &'a str,
    arch: Option<&'a str>,
}

impl Columns {
    fn from_header(cells: &[&str]) -> Option<Self> {
        let find = |title: &str| cells.iter().position(|cell| *cell == title);
        Some(Self {
            count: cells.len(),
            repository: find("Repository")?,
            name: find("Name")?,
            current: find("Current Version"),
            available: find("Available Version")?,
            arch: find("Arch"),
        })
    }

    fn read<'a>(&self, cells: &[&'a str]) -> Option<Row<'a>> {
        if cells.len() != self.count {
            return None;
        }
        let cell = |index: usize| cells.get(index).copied();
        let row = Row {
            repository: cell(self.repository)?,
            name: cell(self.name)?,
            from: self.current.and_then(cell).filter(|from| !from.is_empty()),
            to: cell(self.available)?,
            arch: self.arch.and_then(cell).filter(|arch| !arch.is_empty()),
        };
        let fine = plausible_name(row.name)
            && plausible_version(row.to)
            && row.from.is_none_or(plausible_version);
        fine.then_some(row)
    }
}

/// The names under "The following N packages are going to be upgraded:"
/// (or "...package is going to be upgraded:", and the NEW packages to be
/// installed) in a zypper plan, up to the next blank line. A package that
/// can be installed in several versions (kernels) is listed with its
/// version.
fn security_packages(plan: &str) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    let mut listing = false;
    for line in plan.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            listing = false;
        } else if trimmed.starts_with("The following ") {
            listing = (trimmed.contains(" package is going to be ")
                || trimmed.contains(" packages are going to be "))
                && (trimmed.ends_with(" upgraded:") || trimmed.ends_with(" installed:"));
        } else if listing && line.starts_with(char::is_whitespace) {
            names.extend(trimmed.split_whitespace());
        } else {
            listing = false;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not recorded here (no machine runs zypper). The `aaa_base` and
    /// `git-core` rows and the header are quoted from `zypper -q lu` on
    /// openSUSE Leap 15.6 as posted in a public issue thread; the security
    /// plan is quoted from recorded `zypper patch --category security` output
    /// in a public test suite (Leap 15.2), trimmed to two patches; the
    /// `libfreetype6`, `libgnutls30` and `yast2-network` rows were written to
    /// match that plan.
    const LEAP: &str = include_str!("fixtures/zypper-list-updates.txt");
    /// SLES 12 rows (one with the narrow spacing zypper uses past its column
    /// width) quoted from a public test suite, with a plan that has nothing
    /// to do.
    const SLES12: &str = include_str!("fixtures/zypper-sles12-list-updates.txt");

    #[test]
    fn leap_table_and_security_plan() {
        let upgrades = parse_upgrades(LEAP).expect("zypper output");
        let listed: Vec<(&str, bool)> = upgrades
            .iter()
            .map(|u| (u.name.as_str(), u.security))
            .collect();
        assert_eq!(
            listed,
            [
                ("aaa_base", false),
                ("git-core", false),
                ("libfreetype6", true),
                ("libgnutls30", true),
                ("yast2-network", false),
            ]
        );
        let aaa = &upgrades[0];
        assert_eq!(
            aaa.from.as_deref(),
            Some("84.87+git20180409.04c9dae-150300.10.20.1")
        );
        assert_eq!(aaa.to, "84.87+git20180409.04c9dae-150300.10.23.1");
        assert_eq!(aaa.arch.as_deref(), Some("x86_64"));
        assert_eq!(
            aaa.origin,
            "Update repository with updates from SUSE Linux Enterprise 15"
        );
        assert_eq!(upgrades[4].arch.as_deref(), Some("noarch"));
    }

    #[test]
    fn sles12_rows() {
        let upgrades = parse_upgrades(SLES12).expect("zypper output");
        let listed: Vec<(&str, &str, &str)> = upgrades
            .iter()
            .map(|u| (u.name.as_str(), u.to.as_str(), u.origin.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("SUSEConnect", "0.3.1-19.11.2", "SLES12-SP2-Updates"),
                ("SuSEfirewall2", "3.6.312-2.10.1", "SLES12-SP2-Updates"),
                (
                    "ConsoleKit",
                    "0.2.10-64.69.1",
                    "Clone of SLES11-SP3-Updates for x86_64"
                ),
            ]
        );
        assert!(upgrades.iter().all(|u| !u.security));
    }

    #[test]
    fn multiversion_packages_are_listed_with_their_version() {
        let text = "S | Repository | Name | Current Version | Available Version | Arch\n--+---+---+---+---+---\nv | repo-oss | kernel-default | 6.4.0-1.1 | 6.4.0-2.1 | x86_64\n@nightshift-security@\nThe following package is going to be upgraded:\n  kernel-default-6.4.0-2.1\n\n";
        let upgrades = parse_upgrades(text).expect("zypper output");
        assert!(upgrades[0].security);
    }

    #[test]
    fn nothing_to_do() {
        assert_eq!(
            parse_upgrades("@nightshift-security@\nNothing to do.\n"),
            Ok(Vec::new())
        );
        assert_eq!(
            parse_upgrades("No updates found.\n@nightshift-security@\n"),
            Ok(Vec::new())
        );
        assert_eq!(
            parse_upgrades(
                "Loading repository data...\nReading installed packages...\nNo updates found.\n@nightshift-security@\n"
            ),
            Ok(Vec::new())
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            parse_upgrades(""),
            Err(PackageError::Incomplete { .. })
        ));
        assert!(matches!(
            parse_upgrades("garbage\n@nightshift-security@\n"),
            Err(PackageError::Incomplete { .. })
        ));
        assert!(matches!(
            parse_upgrades("a | b\n@nightshift-security@\n"),
            Err(PackageError::Unreadable { .. })
        ));
        let short_row = "S | Repository | Name | Current Version | Available Version | Arch\nv | repo | name | 1.0\n@nightshift-security@\n";
        assert!(matches!(
            parse_upgrades(short_row),
            Err(PackageError::Unreadable { .. })
        ));
        let bad_version = "S | Repository | Name | Current Version | Available Version | Arch\nv | repo | name | 1.0 | new | x86_64\n@nightshift-security@\n";
        assert!(matches!(
            parse_upgrades(bad_version),
            Err(PackageError::Unreadable { .. })
        ));
    }

    #[test]
    fn plan_lists() {
        let plan = "The following 2 NEW patches are going to be installed:\n  openSUSE-2020-1743 openSUSE-2020-1744\n\nThe following 3 NEW packages are going to be installed:\n  dmraid grub2-systemd-sleep-plugin os-prober\n\nThe following 2 packages are going to be upgraded:\n  grub2 grub2-arm64-efi\n\n2 packages to upgrade, 3 new.\n";
        let names: Vec<&str> = security_packages(plan).into_iter().collect();
        assert_eq!(
            names,
            [
                "dmraid",
                "grub2",
                "grub2-arm64-efi",
                "grub2-systemd-sleep-plugin",
                "os-prober"
            ]
        );
    }
}
