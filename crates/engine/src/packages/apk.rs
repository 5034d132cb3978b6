//! apk (Alpine).
//!
//! apk has no security metadata: Alpine publishes fixes as ordinary package
//! releases in the same repositories, and `apk list` cannot tell them
//! apart. Every apk [`Upgrade`] therefore has `security: false`, and a
//! `security_only` step upgrades nothing on an Alpine host. `apk list` does
//! not name the repository either; [`Upgrade::origin`] holds the origin
//! (source) package from its `{...}` field instead.
//!
//! apk never prompts unless `--interactive` is given or
//! `/etc/apk/interactive` exists and it runs on a terminal, which the
//! engine's commands do not have. Changed configuration files are kept, the
//! new ones written beside them as `.apk-new`.

use std::collections::BTreeMap;

use super::{
    Manager, PackageError, Upgrade, excerpt, keep_newest, plausible_name, plausible_version,
};

pub(super) const REFRESH: &str = "LC_ALL=C apk update -q";

pub(super) const LIST: &str = "LC_ALL=C apk list --upgradable";

const HINT: &str = "apk list --upgradable";

/// With names, `apk upgrade` upgrades only those (and what they need), and
/// does not add them to `/etc/apk/world` as `apk add -u` would.
pub(super) fn apply(names: &str) -> String {
    format!("LC_ALL=C apk --no-progress upgrade {names}")
}

pub(super) fn installed(names: &str) -> String {
    if names.is_empty() {
        "LC_ALL=C apk list --installed".to_string()
    } else {
        format!("LC_ALL=C apk list --installed {names}")
    }
}

/// `NAME-VERSION ARCH {ORIGIN} (LICENSE) [upgradable from: NAME-OLDVERSION]`.
/// apk can list one name once per repository that has a newer version; the
/// newest is kept.
pub(super) fn parse_upgrades(stdout: &str) -> Result<Vec<Upgrade>, PackageError> {
    let mut upgrades: Vec<Upgrade> = Vec::new();
    for line in stdout.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("WARNING:") {
            continue;
        }
        let package = parse_line(line)
            .and_then(|(package, status)| {
                let old = status.strip_prefix("upgradable from: ")?;
                let (old_name, old_version) = split_name_version(old)?;
                (old_name == package.name).then_some((package, old_version))
            })
            .ok_or_else(|| {
                unreadable(
                    line,
                    "a `NAME-VERSION ARCH {ORIGIN} (LICENSE) [upgradable from: NAME-VERSION]` line",
                )
            })?;
        let (package, from) = package;
        let upgrade = Upgrade {
            name: package.name.to_string(),
            arch: Some(package.arch.to_string()),
            from: Some(from.to_string()),
            to: package.version.to_string(),
            security: false,
            origin: package.origin.to_string(),
        };
        match upgrades.iter_mut().find(|known| known.name == upgrade.name) {
            Some(known) => {
                if super::compare_versions(&known.to, &upgrade.to).is_lt() {
                    *known = upgrade;
                }
            }
            None => upgrades.push(upgrade),
        }
    }
    Ok(upgrades)
}

/// Reads `apk list --installed`: the same lines, ending in `[installed]`.
pub(super) fn parse_installed(stdout: &str) -> Result<BTreeMap<String, String>, PackageError> {
    let mut installed = BTreeMap::new();
    for line in stdout.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("WARNING:") {
            continue;
        }
        let (package, _status) = parse_line(line)
            .filter(|(_, status)| *status == "installed")
            .ok_or_else(|| {
                unreadable(
                    line,
                    "a `NAME-VERSION ARCH {ORIGIN} (LICENSE) [installed]` line",
                )
            })?;
        keep_newest(&mut installed, package.name, package.version);
    }
    Ok(installed)
}

fn unreadable(line: &str, what: &'static str) -> PackageError {
    PackageError::Unreadable {
        manager: Manager::Apk,
        what,
        line: excerpt(line),
        hint: HINT,
    }
}

struct Package<'a> {
    name: &'a str,
    version: &'a str,
    arch: &'a str,
    origin: &'a str,
}

/// A line of `apk list` and what is in its final brackets.
fn parse_line(line: &str) -> Option<(Package<'_>, &str)> {
    let (head, status) = line.strip_suffix(']')?.rsplit_once(" [")?;
    let (name_version, rest) = head.split_once(' ')?;
    let (arch, rest) = rest.split_once(' ')?;
    let origin = rest.strip_prefix('{')?.split_once('}')?.0;
    let (name, version) = split_name_version(name_version)?;
    Some((
        Package {
            name,
            version,
            arch,
            origin,
        },
        status,
    ))
}

/// apk joins name and version with `-`, and both may contain `-` and
/// digits (`busybox-binsh-1.36.1-r7`, `libcrypto3-3.1.8-r0`); but a version
/// always ends in `-rN` and has no other `-`, so it is the last two parts.
fn split_name_version(text: &str) -> Option<(&str, &str)> {
    let (rest, release) = text.rsplit_once('-')?;
    let (name, _upstream) = rest.rsplit_once('-')?;
    let release_number = release.strip_prefix('r')?;
    if release_number.is_empty() || !release_number.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let version = text.get(name.len() + 1..)?;
    (plausible_name(name) && plausible_version(version)).then_some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not recorded here (no machine runs Alpine): `apk list --upgradable`
    /// of an `alpine:3.18.0` container against the live index, quoted from a
    /// public test suite that recorded it.
    const ALPINE: &str = include_str!("fixtures/apk-list-upgradable.txt");

    #[test]
    fn alpine_upgrades() {
        let upgrades = parse_upgrades(ALPINE).expect("apk output");
        let listed: Vec<(&str, Option<&str>, &str, &str)> = upgrades
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.from.as_deref(),
                    u.to.as_str(),
                    u.origin.as_str(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("apk-tools", Some("2.14.0-r0"), "2.14.4-r0", "apk-tools"),
                ("busybox", Some("1.36.0-r9"), "1.36.1-r7", "busybox"),
                ("busybox-binsh", Some("1.36.0-r9"), "1.36.1-r7", "busybox"),
                (
                    "ca-certificates-bundle",
                    Some("20230506-r0"),
                    "20241121-r1",
                    "ca-certificates"
                ),
                ("libcrypto3", Some("3.1.0-r4"), "3.1.8-r0", "openssl"),
                ("libssl3", Some("3.1.0-r4"), "3.1.8-r0", "openssl"),
                ("musl", Some("1.2.4-r0"), "1.2.4-r3", "musl"),
                ("musl-utils", Some("1.2.4-r0"), "1.2.4-r3", "musl"),
                ("ssl_client", Some("1.36.0-r9"), "1.36.1-r7", "busybox"),
            ]
        );
        assert!(
            upgrades
                .iter()
                .all(|u| !u.security && u.arch.as_deref() == Some("x86_64"))
        );
    }

    #[test]
    fn one_name_from_two_repositories_keeps_the_newest() {
        let text = "curl-8.5.0-r0 x86_64 {curl} (curl) [upgradable from: curl-8.4.0-r0]\ncurl-8.9.0-r0 x86_64 {curl} (curl) [upgradable from: curl-8.4.0-r0]\ncurl-8.6.0-r0 x86_64 {curl} (curl) [upgradable from: curl-8.4.0-r0]\n";
        let upgrades = parse_upgrades(text).expect("apk output");
        assert_eq!(upgrades.len(), 1);
        assert_eq!(upgrades[0].to, "8.9.0-r0");
    }

    /// Lines in the format `apk list` prints (apk-tools 2), as quoted from a
    /// public test suite.
    #[test]
    fn installed_packages() {
        let installed =
            parse_installed(include_str!("fixtures/apk-list-installed.txt")).expect("apk output");
        assert_eq!(installed.len(), 2);
        assert_eq!(installed["apk-tools"], "2.14.4-r0");
        assert_eq!(installed["busybox"], "1.36.1-r2");
        assert_eq!(parse_installed(""), Ok(BTreeMap::new()));
        assert!(parse_installed(ALPINE).is_err());
        assert_eq!(installed_command_for(&[]), "LC_ALL=C apk list --installed");
    }

    fn installed_command_for(names: &[String]) -> String {
        Manager::Apk.installed(names)
    }

    #[test]
    fn splitting_names_from_versions() {
        assert_eq!(
            split_name_version("busybox-binsh-1.36.1-r7"),
            Some(("busybox-binsh", "1.36.1-r7"))
        );
        assert_eq!(
            split_name_version("libcrypto3-3.1.8-r0"),
            Some(("libcrypto3", "3.1.8-r0"))
        );
        assert_eq!(
            split_name_version("py3-pip-23.1.2_p1-r10"),
            Some(("py3-pip", "23.1.2_p1-r10"))
        );
        for bad in [
            "",
            "busybox",
            "busybox-1.36",
            "busybox-1.36-rx",
            "busybox-1.36-r",
            "-1.0-r0",
            "x-abc-r0",
        ] {
            assert_eq!(split_name_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_and_nothing_is_empty() {
        assert_eq!(parse_upgrades(""), Ok(Vec::new()));
        assert_eq!(
            parse_upgrades(
                "WARNING: fetching https://example.invalid/x86_64/APKINDEX.tar.gz: network error\n"
            ),
            Ok(Vec::new())
        );
        for text in [
            "garbage",
            "busybox-1.36.1-r7 x86_64 {busybox} (GPL-2.0-only) [installed]",
            "busybox-1.36.1-r7 x86_64 {busybox} (GPL-2.0-only) [upgradable from: musl-1.2.4-r0]",
            "busybox-1.36.1-r7 x86_64 busybox (GPL-2.0-only) [upgradable from: busybox-1.36.0-r9]",
            "busybox-1.36.1-r7 [upgradable from: busybox-1.36.0-r9]",
        ] {
            assert!(parse_upgrades(text).is_err(), "{text}");
        }
    }
}
