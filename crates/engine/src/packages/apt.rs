//! apt and dpkg.
//!
//! The upgrade list is a simulation of `apt-get upgrade --with-new-pkgs`,
//! not of `dist-upgrade`. That is the transaction [`apply`] can actually
//! perform: `apt-get install --only-upgrade --no-remove` upgrades the named
//! packages and installs any new dependency they need (a new kernel ABI
//! package, say) but never removes one, and `upgrade --with-new-pkgs` is the
//! same rule over all packages. `dist-upgrade` would also list upgrades
//! that only go through by removing packages; those are kept back here
//! instead (apt says so in a "kept back" list), and the host needs a person.
//! Should a simulation still plan a removal (`Remv` lines, say from a
//! `dist-upgrade` run by other means), [`parse_upgrades`] refuses with
//! [`PackageError::WouldRemove`] rather than report a plan nightshift would
//! not carry out.

use std::collections::BTreeMap;

use super::{Manager, PackageError, Upgrade, excerpt, plausible_name, plausible_version};

pub(super) const REFRESH: &str = "LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -q update";

/// Simulated, so it needs no root: `Debug::NoLocking` lets an unprivileged
/// user read the package state, and the "this is only a simulation" note is
/// turned off.
pub(super) const LIST: &str = "LC_ALL=C apt-get -s -o Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false --with-new-pkgs upgrade";

const HINT: &str = "apt-get -s --with-new-pkgs upgrade";

/// `--force-confdef --force-confold`: a configuration file changed on the
/// host is kept (and the package's default taken where there is one), never
/// asked about. `NEEDRESTART_MODE=a` makes needrestart restart services
/// instead of prompting. `--no-remove` aborts rather than remove anything.
/// An apt-held package makes it fail rather than be changed.
pub(super) fn apply(names: &str) -> String {
    format!(
        "LC_ALL=C DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get install -y -q --only-upgrade --no-remove -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -- {names}"
    )
}

pub(super) fn hold(names: &str) -> String {
    format!("LC_ALL=C apt-mark hold -- {names}")
}

/// The native architecture first (a foreign-architecture package is named
/// `name:arch`, as apt names it), then one line per known package. dpkg-query
/// exits 1 when a name is unknown (and says so on stderr); that is folded
/// into 0.
pub(super) fn installed(names: &str) -> String {
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(" -- {names}")
    };
    format!(
        r#"LC_ALL=C dpkg --print-architecture; LC_ALL=C dpkg-query -W -f='${{Package}}\t${{Architecture}}\t${{Version}}\t${{db:Status-Abbrev}}\n'{names}; rc=$?; [ "$rc" -eq 1 ] && rc=0; exit "$rc""#
    )
}

pub(super) fn parse_upgrades(stdout: &str) -> Result<Vec<Upgrade>, PackageError> {
    let mut upgrades = Vec::new();
    let mut removals = Vec::new();
    let mut summary = None;
    for line in stdout.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("Inst ") {
            let upgrade = parse_inst(rest).ok_or_else(|| PackageError::Unreadable {
                manager: Manager::Apt,
                what: "an `Inst NAME [OLD] (NEW ORIGIN [ARCH])` line",
                line: excerpt(line),
                hint: HINT,
            })?;
            upgrades.push(upgrade);
        } else if let Some(rest) = line
            .strip_prefix("Remv ")
            .or_else(|| line.strip_prefix("Purg "))
        {
            removals.push(rest.split_whitespace().next().unwrap_or(rest).to_string());
        } else if let Some(counts) = parse_summary(line) {
            summary = Some(counts);
        }
    }
    let Some(summary) = summary else {
        return Err(PackageError::Incomplete {
            manager: Manager::Apt,
            what: "summary line (`N upgraded, N newly installed, N to remove and N not upgraded.`)",
            hint: HINT,
        });
    };
    if summary.removed > 0 || !removals.is_empty() {
        return Err(PackageError::WouldRemove {
            count: summary.removed.max(removals.len()),
            packages: removals,
        });
    }
    if summary.changed != upgrades.len() {
        return Err(PackageError::Miscounted {
            expected: summary.changed,
            found: upgrades.len(),
            hint: HINT,
        });
    }
    Ok(upgrades)
}

/// `NAME [OLD] (NEW ORIGIN[, ORIGIN...] [ARCH])`, then maybe apt's notes on
/// broken dependencies (`[]`, `[perl:amd64 ]`), which are ignored. `[OLD]`
/// is missing for a new package. Each origin is `[LABEL:][VERSION/]SUITE`
/// (apt's `RelStr`); with no Release file it is the host name or
/// `localhost`.
fn parse_inst(rest: &str) -> Option<Upgrade> {
    let (name, rest) = rest.split_once(' ')?;
    let mut rest = rest.trim_start();
    let mut from = None;
    if let Some(after) = rest.strip_prefix('[') {
        let (old, after) = after.split_once(']')?;
        from = Some(old.to_string());
        rest = after.trim_start();
    }
    let (inside, _notes) = rest.strip_prefix('(')?.split_once(')')?;
    let (to, described) = inside.split_once(' ').unwrap_or((inside, ""));
    let (origins, arch) = match described.rsplit_once(" [") {
        Some((origins, arch)) => (origins, Some(arch)),
        None => match described.strip_prefix('[') {
            Some(arch) => ("", Some(arch)),
            None => (described, None),
        },
    };
    let arch = match arch {
        Some(arch) => Some(arch.strip_suffix(']')?.to_string()),
        None => None,
    };
    if !plausible_name(name)
        || !plausible_version(to)
        || from.as_deref().is_some_and(|from| !plausible_version(from))
    {
        return None;
    }
    let origins: Vec<Origin<'_>> = origins
        .split(", ")
        .filter(|o| !o.is_empty())
        .map(Origin::parse)
        .collect();
    let security = origins.iter().find(|o| o.is_security());
    let origin = security.or(origins.first()).map_or("", |o| o.suite);
    Some(Upgrade {
        name: name.to_string(),
        arch,
        from,
        to: to.to_string(),
        security: security.is_some(),
        origin: origin.to_string(),
    })
}

struct Origin<'a> {
    label: Option<&'a str>,
    suite: &'a str,
}

impl<'a> Origin<'a> {
    fn parse(text: &'a str) -> Self {
        let (label, rest) = match text.split_once(':') {
            Some((label, rest)) => (Some(label), rest),
            None => (None, text),
        };
        let suite = rest.split_once('/').map_or(rest, |(_version, suite)| suite);
        Self { label, suite }
    }

    /// Debian's security archive is labelled `Debian-Security`; Ubuntu's
    /// (and ESM's) suites end in `-security`.
    fn is_security(&self) -> bool {
        self.label.is_some_and(|label| label.contains("Security"))
            || self.suite.ends_with("-security")
    }
}

struct Summary {
    /// Upgraded, newly installed, downgraded and reinstalled: one `Inst`
    /// line each.
    changed: usize,
    removed: usize,
}

/// `5 upgraded, 1 newly installed, 0 to remove and 1 not upgraded.`, with
/// `N downgraded, ` and `N reinstalled, ` before `to remove` when there are
/// any.
fn parse_summary(line: &str) -> Option<Summary> {
    let line = line.strip_suffix(" not upgraded.")?;
    let (changes, removal) = line.rsplit_once(", ")?;
    let (removed, kept_back) = removal.split_once(" to remove and ")?;
    let removed = removed.parse().ok()?;
    let _kept_back: usize = kept_back.parse().ok()?;
    let mut changed = 0usize;
    for part in changes.split(", ") {
        let (count, what) = part.split_once(' ')?;
        let count: usize = count.parse().ok()?;
        match what {
            "upgraded" | "newly installed" | "downgraded" | "reinstalled" => {
                changed = changed.checked_add(count)?
            }
            _ => return None,
        }
    }
    Some(Summary { changed, removed })
}

/// Reads [`installed`]: `NATIVE-ARCH` on its own line, then
/// `NAME\tARCH\tVERSION\tSTATUS`. Also accepts `NAME\tVERSION\tSTATUS` and
/// `NAME\tVERSION` (taken as installed) lines.
pub(super) fn parse_installed(stdout: &str) -> Result<BTreeMap<String, String>, PackageError> {
    let mut native: Option<&str> = None;
    let mut installed = BTreeMap::new();
    for line in stdout.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (name, arch, version, status) = match fields.as_slice() {
            [arch] if native.is_none() && plausible_name(arch.trim()) => {
                native = Some(arch.trim());
                continue;
            }
            [name, version] => (*name, None, *version, None),
            [name, version, status] => (*name, None, *version, Some(*status)),
            [name, arch, version, status] => (*name, Some(*arch), *version, Some(*status)),
            _ => return Err(unreadable_status(line)),
        };
        if !plausible_name(name) {
            return Err(unreadable_status(line));
        }
        if !status.is_none_or(is_installed) {
            continue;
        }
        if !plausible_version(version) {
            return Err(unreadable_status(line));
        }
        let key = match arch {
            Some(arch) if arch != "all" && native.is_some_and(|native| native != arch) => {
                format!("{name}:{arch}")
            }
            _ => name.to_string(),
        };
        installed.insert(key, version.to_string());
    }
    Ok(installed)
}

fn unreadable_status(line: &str) -> PackageError {
    PackageError::Unreadable {
        manager: Manager::Apt,
        what: "a `NAME<tab>ARCH<tab>VERSION<tab>STATUS` line from dpkg-query",
        line: excerpt(line),
        hint: "dpkg-query -W -f='${Package}\\t${Architecture}\\t${Version}\\t${db:Status-Abbrev}\\n' NAME",
    }
}

/// `${db:Status-Abbrev}` is three letters: wanted, current and error state.
/// Installed means the current state is `i` (or `t`/`W`: installed, with
/// triggers pending); `c` is removed with its configuration kept, `n` not
/// installed, and `U`, `F`, `H` an unpacked, half-configured or
/// half-installed package (a failed upgrade).
fn is_installed(status: &str) -> bool {
    matches!(status.as_bytes().get(1), Some(b'i' | b't' | b'W'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on a Debian 12 machine as root, `LC_ALL=C apt-get -s -o
    /// Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false
    /// --with-new-pkgs upgrade` (identical to its `dist-upgrade` there); only
    /// the `Conf` lines were removed.
    const BOOKWORM: &str = include_str!("fixtures/apt-bookworm-upgrade.txt");
    /// The test fleet's repository, rebuilt by `tests/fleet/fixtures/build-repo`
    /// and simulated with apt against a dpkg status of the fleet image's
    /// three fixture packages at 1.0 (the fleet host does not print `Reading
    /// state information...` differently; apt's lines are the same).
    const FIXTURES: &str = include_str!("fixtures/apt-fixtures-upgrade.txt");
    /// Same repository plus a scratch suite `extra` (no Label, no Version)
    /// with a package that needs a new dependency, one whose upgrade
    /// conflicts with an installed package, and an epoch: recorded with
    /// `upgrade --with-new-pkgs` and with `dist-upgrade`.
    const SCRATCH: &str = include_str!("fixtures/apt-scratch-upgrade.txt");
    const SCRATCH_DIST: &str = include_str!("fixtures/apt-scratch-dist-upgrade.txt");

    fn find<'a>(upgrades: &'a [Upgrade], name: &str) -> &'a Upgrade {
        upgrades
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    }

    #[test]
    fn fixture_repository() {
        let upgrades = parse_upgrades(FIXTURES).expect("fixture output");
        let summary: Vec<(&str, Option<&str>, &str, bool, &str)> = upgrades
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.from.as_deref(),
                    u.to.as_str(),
                    u.security,
                    u.origin.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "nightshift-fixture-app",
                    Some("1.0"),
                    "1.1",
                    false,
                    "fixtures"
                ),
                (
                    "nightshift-fixture-kernel",
                    Some("1.0"),
                    "1.1",
                    false,
                    "fixtures"
                ),
                (
                    "nightshift-fixture-lib",
                    Some("1.0"),
                    "1.1",
                    true,
                    "fixtures-security"
                ),
            ]
        );
        assert!(upgrades.iter().all(|u| u.arch.as_deref() == Some("all")));
    }

    #[test]
    fn bookworm_machine() {
        let upgrades = parse_upgrades(BOOKWORM).expect("recorded output");
        assert_eq!(upgrades.len(), 137);
        assert!(upgrades.iter().all(|u| u.from.is_some()));

        let base = find(&upgrades, "base-files");
        assert_eq!(base.from.as_deref(), Some("12.4+deb12u11"));
        assert_eq!(base.to, "12.4+deb12u15");
        assert_eq!(base.arch.as_deref(), Some("amd64"));
        assert!(!base.security);
        assert_eq!(base.origin, "oldstable");

        // Only in the security archive, with a note on broken dependencies.
        let ssl = find(&upgrades, "libssl3");
        assert_eq!(ssl.from.as_deref(), Some("3.0.19-1~deb12u2"));
        assert_eq!(ssl.to, "3.0.22-1~deb12u2");
        assert!(ssl.security);
        assert_eq!(ssl.origin, "oldstable-security");

        // In both archives: security, from the security one.
        let gcrypt = find(&upgrades, "libgcrypt20");
        assert_eq!(gcrypt.to, "1.10.1-3+deb12u1");
        assert!(gcrypt.security);
        assert_eq!(gcrypt.origin, "oldstable-security");

        // Epochs, `[all]`, and two dependency notes after the parenthesis.
        let login = find(&upgrades, "login");
        assert_eq!(login.from.as_deref(), Some("1:4.13+dfsg1-1+deb12u1"));
        assert_eq!(login.to, "1:4.13+dfsg1-1+deb12u2");
        let tz = find(&upgrades, "tzdata");
        assert_eq!(tz.arch.as_deref(), Some("all"));
        assert!(tz.security);
        let pam = find(&upgrades, "libpam-modules-bin");
        assert_eq!(pam.to, "1.5.2-6+deb12u3");
        assert!(pam.security);

        assert_eq!(upgrades.iter().filter(|u| u.security).count(), 90);
    }

    #[test]
    fn new_dependencies_and_unlabelled_suites() {
        let upgrades = parse_upgrades(SCRATCH).expect("recorded output");
        let names: Vec<&str> = upgrades.iter().map(|u| u.name.as_str()).collect();
        // scratch-breaker is kept back: its upgrade needs a removal.
        assert_eq!(
            names,
            [
                "nightshift-fixture-app",
                "nightshift-fixture-kernel",
                "nightshift-fixture-lib",
                "scratch-epoch",
                "scratch-new",
                "scratch-meta",
            ]
        );
        let new = find(&upgrades, "scratch-new");
        assert_eq!(new.from, None);
        assert_eq!(new.to, "1");
        assert_eq!(new.origin, "extra");
        assert!(!new.security);
        let epoch = find(&upgrades, "scratch-epoch");
        assert_eq!(epoch.from.as_deref(), Some("1.9-1"));
        assert_eq!(epoch.to, "1:2.0~rc1-1");
    }

    #[test]
    fn a_planned_removal_is_refused() {
        assert_eq!(
            parse_upgrades(SCRATCH_DIST),
            Err(PackageError::WouldRemove {
                count: 1,
                packages: vec!["scratch-victim".to_string()],
            })
        );
    }

    #[test]
    fn origins_and_foreign_architectures() {
        let ubuntu = "Inst libssl3 [3.0.2-0ubuntu1.10] (3.0.2-0ubuntu1.12 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64])";
        let u = parse_inst(ubuntu.trim_start_matches("Inst ")).expect("ubuntu line");
        assert!(u.security);
        assert_eq!(u.origin, "jammy-security");

        let backports =
            "libfoo [1.0-1] (1.2-1~bpo12+1 Debian Backports:bookworm-backports [amd64])";
        let u = parse_inst(backports).expect("label with a space");
        assert!(!u.security);
        assert_eq!(u.origin, "bookworm-backports");

        let foreign =
            "libc6:i386 [2.36-9+deb12u13] (2.36-9+deb12u14 Debian:12.15/oldstable [i386])";
        let u = parse_inst(foreign).expect("foreign arch");
        assert_eq!(u.name, "libc6:i386");
        assert_eq!(u.arch.as_deref(), Some("i386"));

        let local = "thing [1] (2 localhost [amd64])";
        assert_eq!(
            parse_inst(local).expect("no Release file").origin,
            "localhost"
        );

        let bare = "thing [1] (2)";
        let u = parse_inst(bare).expect("no origin, no arch");
        assert_eq!((u.arch, u.origin.as_str(), u.security), (None, "", false));
    }

    #[test]
    fn summary_lines() {
        let s = parse_summary("137 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
            .expect("summary");
        assert_eq!((s.changed, s.removed), (137, 0));
        let s = parse_summary("5 upgraded, 1 newly installed, 0 to remove and 1 not upgraded.")
            .expect("summary");
        assert_eq!((s.changed, s.removed), (6, 0));
        let s = parse_summary("1 upgraded, 0 newly installed, 2 downgraded, 1 reinstalled, 3 to remove and 0 not upgraded.")
            .expect("summary");
        assert_eq!((s.changed, s.removed), (4, 3));
        assert!(
            parse_summary("0 upgraded, 0 newly installed, 0 to remove and x not upgraded.")
                .is_none()
        );
        assert!(
            parse_summary("a upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
                .is_none()
        );
        assert!(parse_summary("not upgraded.").is_none());
    }

    #[test]
    fn nothing_to_do() {
        let quiet = "Reading package lists...\nBuilding dependency tree...\nReading state information...\nCalculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n";
        assert_eq!(parse_upgrades(quiet), Ok(Vec::new()));
    }

    #[test]
    fn garbage_is_an_error() {
        for text in [
            "",
            "garbage",
            "E: Could not open lock file\n",
            "Inst\n",
            "Inst x\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.",
        ] {
            assert!(parse_upgrades(text).is_err(), "{text:?}");
        }
        for line in [
            "x",
            "x [1",
            "x [1] 2",
            "x (",
            "x (1 [amd64",
            "-x (1)",
            "x (abc)",
            "x [] (1)",
        ] {
            assert!(parse_inst(line).is_none(), "{line:?}");
        }
        // A line cut short is caught by the count.
        let cut = FIXTURES.replace("Inst nightshift-fixture-app", "Conf nightshift-fixture-app");
        assert_eq!(
            parse_upgrades(&cut),
            Err(PackageError::Miscounted {
                expected: 3,
                found: 2,
                hint: HINT
            })
        );
    }

    /// The recorded output of [`installed`] on the Debian 12 machine for
    /// eight installed packages and one unknown name.
    #[test]
    fn installed_on_bookworm() {
        let installed = parse_installed(include_str!("fixtures/dpkg-query-bookworm.txt"))
            .expect("recorded output");
        assert_eq!(installed.len(), 8);
        assert_eq!(installed["libssl3"], "3.0.19-1~deb12u2");
        assert_eq!(installed["openssh-client"], "1:9.2p1-2+deb12u6");
        assert_eq!(installed["ca-certificates"], "20230311+deb12u1");
        assert!(!installed.contains_key("nightshift-fixture-nosuch"));
    }

    /// The same command against a scratch dpkg database (`--admindir`)
    /// holding each interesting state.
    #[test]
    fn installed_states() {
        let installed = parse_installed(include_str!("fixtures/dpkg-query-states.txt"))
            .expect("recorded output");
        let expected: BTreeMap<String, String> = [
            ("libfoo1", "1.2-3"),
            ("libfoo1:i386", "1.2-2"),
            ("nightshift-fixture-app", "1.0"),
            // `hi`: held, and installed
            ("nightshift-fixture-lib", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Left out: `un` (gone), `rc` (oldtool), `iF` (a failed upgrade).
        assert_eq!(installed, expected);
    }

    /// `dpkg-query -W -f='${Package}\t${Version}\n'` on the Debian 12
    /// machine, first lines.
    #[test]
    fn installed_two_fields() {
        let installed = parse_installed(include_str!("fixtures/dpkg-query-two-fields.txt"))
            .expect("recorded output");
        assert_eq!(installed.len(), 30);
        assert_eq!(installed["bsdutils"], "1:2.38.1-5+deb12u3");
        assert_eq!(installed["containerd"], "1.6.20~ds1-1+deb12u3");
    }

    #[test]
    fn installed_garbage() {
        assert_eq!(parse_installed(""), Ok(BTreeMap::new()));
        assert!(parse_installed("amd64\nfoo bar baz\n").is_err());
        assert!(parse_installed("a\tb\tc\td\te\n").is_err());
        assert!(parse_installed("amd64\nfoo\tamd64\tnot-a-version\tii \n").is_err());
        assert!(installed("").ends_with(r#"\n'; rc=$?; [ "$rc" -eq 1 ] && rc=0; exit "$rc""#));
        assert!(installed("'x'").contains(r"\n' -- 'x'; rc=$?"));
    }

    /// The command itself, run here against this machine's dpkg database,
    /// must exit 0 for an unknown name and parse.
    #[test]
    fn installed_command_runs_here() {
        if !std::path::Path::new("/usr/bin/dpkg-query").exists() {
            return;
        }
        let command = installed("'dpkg' 'nightshift-nosuch'");
        let Ok(output) = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .output()
        else {
            return;
        };
        assert!(output.status.success(), "{command}");
        let installed =
            parse_installed(&String::from_utf8_lossy(&output.stdout)).expect("own output");
        assert!(installed.contains_key("dpkg"));
        assert!(!installed.contains_key("nightshift-nosuch"));
    }
}
