//! dnf (4 and 5) and rpm.
//!
//! `dnf check-update` exits 100 when updates are available, 0 when there are
//! none and 1 on error. [`LIST`] runs it twice, once for all updates and
//! once with `--security` (which reads the repositories' updateinfo), and
//! folds 100 into 0, so the caller accepts exit code 0 only. Anyone running
//! `dnf check-update` by other means must accept both 0 and 100.
//!
//! Its "Obsoleting Packages" section (packages that replace other packages)
//! is not read: a replacement is an install plus a removal, which
//! nightshift does not do unattended, and `dnf upgrade NAME` of the old name
//! would not perform it either.

use std::collections::BTreeSet;

use super::{Manager, PackageError, Upgrade, excerpt, plausible_name, plausible_version};

pub(super) const REFRESH: &str = "LC_ALL=C dnf -q -y --refresh makecache";

/// Separates the two lists in [`LIST`]'s output; one token, so it cannot be
/// read as a package line.
pub(super) const SECURITY_MARK: &str = "@nightshift-security@";

pub(super) const LIST: &str = concat!(
    r#"LC_ALL=C dnf -q check-update; rc=$?; [ "$rc" -eq 0 ] || [ "$rc" -eq 100 ] || exit "$rc"; "#,
    "echo '@nightshift-security@'; ",
    r#"LC_ALL=C dnf -q check-update --security; rc=$?; [ "$rc" -eq 0 ] || [ "$rc" -eq 100 ] || exit "$rc"; exit 0"#,
);

const HINT: &str = "dnf -q check-update";

/// rpm keeps changed configuration files by itself (`.rpmnew`, `.rpmsave`)
/// and never asks.
pub(super) fn apply(names: &str) -> String {
    format!("LC_ALL=C dnf -y upgrade {names}")
}

struct Line<'a> {
    name: &'a str,
    arch: &'a str,
    evr: &'a str,
    repo: &'a str,
}

pub(super) fn parse_upgrades(stdout: &str) -> Result<Vec<Upgrade>, PackageError> {
    let (all, security) = match stdout.split_once(&format!("\n{SECURITY_MARK}")) {
        Some((all, security)) => (all, Some(security)),
        None => match stdout.strip_prefix(SECURITY_MARK) {
            Some(security) => ("", Some(security)),
            None => (stdout, None),
        },
    };
    let Some(security) = security else {
        return Err(PackageError::Incomplete {
            manager: Manager::Dnf,
            what: "security list (the line `@nightshift-security@` that separates it)",
            hint: "dnf -q check-update --security",
        });
    };
    let (lines, strange) = parse_section(all);
    if lines.is_empty()
        && let Some(line) = strange.first()
    {
        return Err(PackageError::Unreadable {
            manager: Manager::Dnf,
            what: "a `NAME.ARCH VERSION REPOSITORY` line",
            line: excerpt(line),
            hint: HINT,
        });
    }
    // The security list only marks; lines dnf prints there that are not
    // packages ("No security updates needed...") do not matter.
    let (security_lines, _) = parse_section(security);
    let security: BTreeSet<(&str, &str)> =
        security_lines.iter().map(|l| (l.name, l.arch)).collect();
    Ok(lines
        .into_iter()
        .map(|l| Upgrade {
            name: l.name.to_string(),
            arch: Some(l.arch.to_string()),
            from: None,
            to: l.evr.to_string(),
            security: security.contains(&(l.name, l.arch)),
            origin: l.repo.to_string(),
        })
        .collect())
}

/// One `check-update` listing: `NAME.ARCH  [EPOCH:]VERSION-RELEASE  REPO`
/// lines, possibly under a dnf 5 `Upgrades` heading, up to the obsoletes.
/// dnf 4 wraps a line whose name fills the column: the rest follows,
/// indented, on the next line. Returns the package lines and the lines that
/// are neither packages nor known notices.
fn parse_section(text: &str) -> (Vec<Line<'_>>, Vec<&str>) {
    let mut packages = Vec::new();
    let mut strange = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty()
            || trimmed.starts_with("Security:")
            || trimmed.starts_with("Last metadata expiration check")
        {
            continue;
        }
        if trimmed.starts_with("Obsoleting") {
            break;
        }
        let mut tokens: Vec<&str> = trimmed.split_whitespace().collect();
        while tokens.len() < 3
            && tokens.first().is_some_and(|first| first.contains('.'))
            && let Some(next) = lines
                .next_if(|next| next.starts_with(char::is_whitespace) && !next.trim().is_empty())
        {
            tokens.extend(next.split_whitespace());
        }
        match tokens.as_slice() {
            [name_arch, evr, repo] => match name_arch.rsplit_once('.') {
                Some((name, arch))
                    if plausible_name(name)
                        && !arch.is_empty()
                        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && plausible_version(evr) =>
                {
                    packages.push(Line {
                        name,
                        arch,
                        evr,
                        repo,
                    });
                }
                _ => strange.push(line),
            },
            // A heading: dnf 5's `Upgrades`.
            [word] if !word.contains('.') => {}
            _ => strange.push(line),
        }
    }
    (packages, strange)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not recorded on a machine here (none runs dnf): the package lines are
    /// quoted from dnf 4 output that users posted in public issue threads
    /// (RHEL 8, Fedora 33, and an obsoletes section from CentOS), assembled
    /// into [`LIST`]'s shape; the marker line and the choice of security
    /// lines are ours.
    const DNF4: &str = include_str!("fixtures/dnf-check-update.txt");
    /// dnf 5 `check-upgrade --quiet` output quoted from a public issue
    /// thread (Fedora 44), with an empty security list.
    const DNF5: &str = include_str!("fixtures/dnf5-check-upgrade.txt");

    #[test]
    fn dnf4_lists_with_security() {
        let upgrades = parse_upgrades(DNF4).expect("dnf 4 output");
        let names: Vec<&str> = upgrades.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "perl-IO",
                "perl-interpreter",
                "perl-libs",
                "platform-python",
                "python3-libs",
                "python3-perf",
                "python3-sssdconfig",
                "samba-client-libs",
                "samba-common",
                "samba-common-libs",
                "slurm",
                "vim-minimal",
            ]
        );
        let perl = &upgrades[1];
        assert_eq!(perl.arch.as_deref(), Some("x86_64"));
        assert_eq!(perl.to, "4:5.26.3-419.el8_4.1");
        assert_eq!(perl.from, None);
        assert_eq!(perl.origin, "rhel-8-for-x86_64-baseos-rpms");
        assert!(perl.security);
        let secure: Vec<&str> = upgrades
            .iter()
            .filter(|u| u.security)
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(
            secure,
            [
                "perl-interpreter",
                "perl-libs",
                "python3-perf",
                "samba-client-libs"
            ]
        );
        let sssd = &upgrades[6];
        assert_eq!(sssd.arch.as_deref(), Some("noarch"));
        assert!(!sssd.security);
        assert_eq!(upgrades[11].to, "2:8.2.3568-1.fc33");
        assert_eq!(upgrades[11].origin, "updates-testing");
        // mpich, in the obsoletes, is not an upgrade.
        assert!(!names.contains(&"mpich"));
    }

    #[test]
    fn dnf5_heading_and_obsoletes() {
        let upgrades = parse_upgrades(DNF5).expect("dnf 5 output");
        let listed: Vec<(&str, Option<&str>, &str)> = upgrades
            .iter()
            .map(|u| (u.name.as_str(), u.arch.as_deref(), u.to.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("apparmor-libs", Some("x86_64"), "6.0.0~alpha1-1.fc44"),
                ("proton-vpn-daemon", Some("noarch"), "0.13.8-1.fc44"),
                ("proton-vpn-gtk-app", Some("noarch"), "4.18.1-1.fc44"),
                (
                    "python3-proton-vpn-api-core",
                    Some("aarch64"),
                    "5.6.10-1.fc44"
                ),
                (
                    "python3-proton-vpn-api-core",
                    Some("x86_64"),
                    "5.6.10-1.fc44"
                ),
            ]
        );
        assert!(upgrades.iter().all(|u| !u.security));
        assert_eq!(upgrades[0].origin, "terra");
    }

    /// Written, not recorded: dnf 4 moves a name that fills its column onto
    /// a line of its own.
    #[test]
    fn wrapped_lines() {
        let text = "\npython3-dnf-plugins-extras-common.noarch\n                    4.1.0-1.fc38      updates\nbash.x86_64   5.2.15-3.fc38   updates\n@nightshift-security@\npython3-dnf-plugins-extras-common.noarch\n                    4.1.0-1.fc38      updates\n";
        let upgrades = parse_upgrades(text).expect("wrapped output");
        assert_eq!(upgrades.len(), 2);
        assert_eq!(upgrades[0].name, "python3-dnf-plugins-extras-common");
        assert_eq!(upgrades[0].to, "4.1.0-1.fc38");
        assert!(upgrades[0].security);
        assert!(!upgrades[1].security);
    }

    #[test]
    fn nothing_to_do() {
        assert_eq!(parse_upgrades("@nightshift-security@\n"), Ok(Vec::new()));
        assert_eq!(parse_upgrades("\n@nightshift-security@\n"), Ok(Vec::new()));
        assert_eq!(
            parse_upgrades(
                "\n@nightshift-security@\nNo security updates needed, but 3 updates available\n"
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
            parse_upgrades("garbage"),
            Err(PackageError::Incomplete { .. })
        ));
        assert!(matches!(
            parse_upgrades(
                "Error: Failed to download metadata for repo 'baseos'\n@nightshift-security@\n"
            ),
            Err(PackageError::Unreadable { .. })
        ));
        assert!(matches!(
            parse_upgrades("bash.x86_64 notaversion updates\n@nightshift-security@\n"),
            Err(PackageError::Unreadable { .. })
        ));
        assert!(LIST.contains(SECURITY_MARK));
    }
}
