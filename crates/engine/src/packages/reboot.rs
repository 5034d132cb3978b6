//! Whether a host needs a reboot after its upgrades.
//!
//! Three signs, in the order they are trusted:
//!
//! 1. `/var/run/reboot-required`, which Debian and Ubuntu packages touch in
//!    their maintainer scripts (with their names appended to
//!    `reboot-required.pkgs`); the test fleet's fixture kernel does the same.
//! 2. needrestart's kernel status, `NEEDRESTART-KSTA` in `needrestart -b -k`
//!    (batch mode, kernel only): 0 unknown, 1 current, 2 an ABI-compatible
//!    upgrade pending, 3 a newer kernel version pending. 2 and 3 want a
//!    reboot.
//! 3. The running kernel (`uname -r`) against the newest installed one
//!    (`/boot/vmlinuz-*`, else `/lib/modules/*`) of the same flavour, for
//!    hosts with neither of the above (dnf, zypper and apk hosts, or apt
//!    hosts without needrestart).

use std::cmp::Ordering;

use super::compare_versions;

/// One shell snippet printing the reboot signs as `key: value` lines, for
/// [`parse_reboot_probe`]. It needs no root, works without needrestart and
/// without `/boot` (as in a container), and always exits 0.
pub const REBOOT_PROBE: &str = r#"PATH="$PATH:/usr/sbin:/sbin"
if [ -e /var/run/reboot-required ]; then
  echo 'reboot-required: yes'
  if [ -r /var/run/reboot-required.pkgs ]; then
    while IFS= read -r p || [ -n "$p" ]; do echo "reboot-required-pkg: $p"; done < /var/run/reboot-required.pkgs
  fi
else
  echo 'reboot-required: no'
fi
if command -v needrestart >/dev/null 2>&1; then
  needrestart -b -k 2>/dev/null | grep '^NEEDRESTART-K'
fi
echo "running-kernel: $(uname -r)"
for f in /boot/vmlinuz-*; do [ -e "$f" ] && echo "boot-kernel: ${f##*/vmlinuz-}"; done
for d in /lib/modules/*/; do [ -d "$d" ] && d="${d%/}" && echo "modules-kernel: ${d##*/}"; done
exit 0"#;

/// Reads the output of [`REBOOT_PROBE`]: `Some(reason)` when the host wants
/// a reboot, such as `/var/run/reboot-required (nightshift-fixture-kernel)`
/// or `running kernel 6.1.0-18-amd64 is older than installed
/// 6.1.0-21-amd64`; `None` when it does not, or when the output says
/// nothing readable.
pub fn parse_reboot_probe(stdout: &str) -> Option<String> {
    let mut required = false;
    let mut packages: Vec<&str> = Vec::new();
    let mut ksta = None;
    let mut kcur = None;
    let mut kexp = None;
    let mut running = None;
    let mut boot = Vec::new();
    let mut modules = Vec::new();
    for line in stdout.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "reboot-required" => required = value == "yes",
            "reboot-required-pkg" if !value.is_empty() && !packages.contains(&value) => {
                packages.push(value)
            }
            "NEEDRESTART-KSTA" => ksta = value.parse::<u8>().ok(),
            "NEEDRESTART-KCUR" if !value.is_empty() => kcur = Some(value),
            "NEEDRESTART-KEXP" if !value.is_empty() => kexp = Some(value),
            "running-kernel" if !value.is_empty() => running = Some(value),
            "boot-kernel" if !value.is_empty() => boot.push(value),
            "modules-kernel" if !value.is_empty() => modules.push(value),
            _ => {}
        }
    }
    if required {
        return Some(if packages.is_empty() {
            "/var/run/reboot-required".to_string()
        } else {
            format!("/var/run/reboot-required ({})", packages.join(", "))
        });
    }
    match (ksta, kcur, kexp) {
        (Some(3), Some(current), Some(expected)) => {
            return Some(format!(
                "needrestart: running kernel {current} is not the expected {expected} (NEEDRESTART-KSTA: 3)"
            ));
        }
        (Some(3), ..) => {
            return Some(
                "needrestart: a newer kernel version is pending (NEEDRESTART-KSTA: 3)".to_string(),
            );
        }
        (Some(2), ..) => {
            return Some(
                "needrestart: an ABI-compatible kernel upgrade is pending (NEEDRESTART-KSTA: 2)"
                    .to_string(),
            );
        }
        _ => {}
    }
    let running = running?;
    let installed = if boot.is_empty() { modules } else { boot };
    let newest = installed
        .into_iter()
        .filter(|release| flavour(release) == flavour(running))
        .max_by(|a, b| compare_versions(a, b))?;
    (compare_versions(running, newest) == Ordering::Less)
        .then(|| format!("running kernel {running} is older than installed {newest}"))
}

/// The part of a kernel release after its version and ABI: the first
/// `-`-separated part after the first that does not start with a digit, and
/// the rest (`6.1.0-18-cloud-amd64` → `cloud-amd64`, `6.8.0-45-generic` →
/// `generic`, `5.14.0-427.el9.x86_64` → nothing). Kernels of other flavours
/// (and RHEL's `0-rescue-...` image) are not upgrades of the running one.
fn flavour(release: &str) -> &str {
    let mut offset = 0;
    for (index, part) in release.split('-').enumerate() {
        if index > 0 && part.starts_with(|c: char| !c.is_ascii_digit()) {
            return release.get(offset..).unwrap_or_default();
        }
        offset += part.len() + 1;
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_required_file() {
        // As the fleet's fixture kernel leaves it: the package appended twice,
        // the last line without its newline.
        let probe = "reboot-required: yes\nreboot-required-pkg: nightshift-fixture-kernel\nreboot-required-pkg: nightshift-fixture-kernel\nrunning-kernel: 6.1.0-18-amd64\n";
        assert_eq!(
            parse_reboot_probe(probe).as_deref(),
            Some("/var/run/reboot-required (nightshift-fixture-kernel)")
        );
        assert_eq!(
            parse_reboot_probe("reboot-required: yes\nrunning-kernel: 6.1.0-18-amd64\n").as_deref(),
            Some("/var/run/reboot-required")
        );
        let two = "reboot-required: yes\nreboot-required-pkg: linux-image-6.1.0-21-amd64\nreboot-required-pkg: libc6\n";
        assert_eq!(
            parse_reboot_probe(two).as_deref(),
            Some("/var/run/reboot-required (linux-image-6.1.0-21-amd64, libc6)")
        );
    }

    /// Recorded on this Debian 12 machine (a VM without `/boot` kernels,
    /// `/lib/modules` or needrestart), as root and as `nobody`.
    #[test]
    fn nothing_to_say() {
        assert_eq!(
            parse_reboot_probe("reboot-required: no\nrunning-kernel: 6.18.44-fc-v1045\n"),
            None
        );
        assert_eq!(parse_reboot_probe(""), None);
        assert_eq!(
            parse_reboot_probe("garbage\n: :\nrunning-kernel:\nboot-kernel: \n"),
            None
        );
    }

    /// needrestart's batch lines as it prints them (quoted from public logs:
    /// Ubuntu 22.04 with KSTA 1, Ubuntu 16.04 with KSTA 3).
    #[test]
    fn needrestart_kernel_status() {
        let current = "reboot-required: no\nNEEDRESTART-KCUR: 5.15.0-72-generic\nNEEDRESTART-KEXP: 5.15.0-72-generic\nNEEDRESTART-KSTA: 1\nrunning-kernel: 5.15.0-72-generic\nboot-kernel: 5.15.0-72-generic\n";
        assert_eq!(parse_reboot_probe(current), None);
        let pending = "reboot-required: no\nNEEDRESTART-KCUR: 4.4.0-154-generic\nNEEDRESTART-KEXP: 4.4.0-159-generic\nNEEDRESTART-KSTA: 3\nrunning-kernel: 4.4.0-154-generic\n";
        assert_eq!(
            parse_reboot_probe(pending).as_deref(),
            Some(
                "needrestart: running kernel 4.4.0-154-generic is not the expected 4.4.0-159-generic (NEEDRESTART-KSTA: 3)"
            )
        );
        assert_eq!(
            parse_reboot_probe("NEEDRESTART-KSTA: 3\n").as_deref(),
            Some("needrestart: a newer kernel version is pending (NEEDRESTART-KSTA: 3)")
        );
        assert!(
            parse_reboot_probe("NEEDRESTART-KSTA: 2\n")
                .is_some_and(|why| why.contains("ABI-compatible"))
        );
        assert_eq!(parse_reboot_probe("NEEDRESTART-KSTA: 0\n"), None);
        assert_eq!(parse_reboot_probe("NEEDRESTART-KSTA: x\n"), None);
        // The file still wins.
        let both =
            "reboot-required: yes\nreboot-required-pkg: linux-image-amd64\nNEEDRESTART-KSTA: 3\n";
        assert_eq!(
            parse_reboot_probe(both).as_deref(),
            Some("/var/run/reboot-required (linux-image-amd64)")
        );
    }

    #[test]
    fn older_running_kernel() {
        let debian = "reboot-required: no\nrunning-kernel: 6.1.0-18-amd64\nboot-kernel: 6.1.0-18-amd64\nboot-kernel: 6.1.0-21-amd64\nboot-kernel: 6.1.0-9-amd64\nmodules-kernel: 6.1.0-18-amd64\n";
        assert_eq!(
            parse_reboot_probe(debian).as_deref(),
            Some("running kernel 6.1.0-18-amd64 is older than installed 6.1.0-21-amd64")
        );
        // Numerically, not as text: -10 is newer than -9.
        let numeric = "running-kernel: 5.10.0-9-amd64\nboot-kernel: 5.10.0-10-amd64\nboot-kernel: 5.10.0-9-amd64\n";
        assert!(
            parse_reboot_probe(numeric)
                .is_some_and(|why| why.ends_with("installed 5.10.0-10-amd64"))
        );
        let rhel = "reboot-required: no\nrunning-kernel: 5.14.0-427.el9.x86_64\nboot-kernel: 0-rescue-4c2e0ea1a0e44d8d8e3a6f0f1d2b3c4d\nboot-kernel: 5.14.0-427.el9.x86_64\nboot-kernel: 5.14.0-503.15.1.el9_5.x86_64\n";
        assert_eq!(
            parse_reboot_probe(rhel).as_deref(),
            Some(
                "running kernel 5.14.0-427.el9.x86_64 is older than installed 5.14.0-503.15.1.el9_5.x86_64"
            )
        );
        // Without /boot kernels, /lib/modules tells.
        let modules = "running-kernel: 6.1.0-18-amd64\nmodules-kernel: 6.1.0-21-amd64\nmodules-kernel: 6.1.0-18-amd64\n";
        assert!(parse_reboot_probe(modules).is_some());
    }

    #[test]
    fn current_or_newer_or_other_flavour_kernels() {
        let current = "running-kernel: 6.1.0-21-amd64\nboot-kernel: 6.1.0-18-amd64\nboot-kernel: 6.1.0-21-amd64\n";
        assert_eq!(parse_reboot_probe(current), None);
        let flavours = "running-kernel: 6.1.0-21-amd64\nboot-kernel: 6.1.0-21-amd64\nboot-kernel: 6.1.0-25-cloud-amd64\nboot-kernel: 6.1.0-25-rt-amd64\n";
        assert_eq!(parse_reboot_probe(flavours), None);
        let container = "reboot-required: no\nrunning-kernel: 6.8.0-45-generic\n";
        assert_eq!(parse_reboot_probe(container), None);
    }

    #[test]
    fn flavours() {
        assert_eq!(flavour("6.1.0-18-amd64"), "amd64");
        assert_eq!(flavour("6.1.0-18-cloud-amd64"), "cloud-amd64");
        assert_eq!(flavour("6.8.0-45-generic"), "generic");
        assert_eq!(flavour("5.14.0-427.el9.x86_64"), "");
        assert_eq!(flavour("0-rescue-4c2e"), "rescue-4c2e");
        assert_eq!(flavour(""), "");
        assert_eq!(flavour("-"), "");
    }

    /// The snippet, run here: it must exit 0 and say at least the running
    /// kernel, as root or not, with or without needrestart.
    #[test]
    fn probe_runs_here() {
        let Ok(output) = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(REBOOT_PROBE)
            .output()
        else {
            return;
        };
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.lines()
                .any(|line| line.starts_with("running-kernel: ")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.starts_with("reboot-required: ")),
            "{text}"
        );
    }
}
