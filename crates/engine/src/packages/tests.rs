use super::*;

pub(super) fn upgrade(name: &str, security: bool) -> Upgrade {
    Upgrade {
        name: name.to_string(),
        arch: None,
        from: Some("1.0".to_string()),
        to: "1.1".to_string(),
        security,
        origin: String::new(),
    }
}

fn policy(security_only: bool, hold: &[&str], allow: &[&str], deny: &[&str]) -> Update {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    Update {
        security_only,
        hold: strings(hold),
        allow: strings(allow),
        deny: strings(deny),
    }
}

fn names(list: &[Upgrade]) -> Vec<&str> {
    list.iter().map(|u| u.name.as_str()).collect()
}

fn left(selection: &Selection) -> Vec<(&str, &str)> {
    selection
        .left
        .iter()
        .map(|(u, why)| (u.name.as_str(), *why))
        .collect()
}

#[test]
fn detect_reads_each_manager_and_nothing_else() {
    assert_eq!(parse_detect("apt-get\n"), Some(Manager::Apt));
    assert_eq!(parse_detect("dnf\n"), Some(Manager::Dnf));
    assert_eq!(parse_detect("  zypper  \n"), Some(Manager::Zypper));
    assert_eq!(parse_detect("\napk\n"), Some(Manager::Apk));
    assert_eq!(parse_detect("/usr/bin/apt-get\n"), Some(Manager::Apt));
    assert_eq!(parse_detect(""), None);
    assert_eq!(parse_detect("\n\n"), None);
    assert_eq!(parse_detect("pacman\n"), None);
    assert_eq!(parse_detect("sh: 1: command: not found\n"), None);
    for manager in Manager::ALL {
        let printed = match manager {
            Manager::Apt => "apt-get",
            other => other.name(),
        };
        assert!(DETECT.contains(printed));
    }
}

#[test]
fn detect_snippet_runs_here() {
    // This machine is Debian: the snippet itself must find apt-get, and
    // must exit 0 whatever it finds.
    let Ok(output) = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(DETECT)
        .output()
    else {
        return;
    };
    assert!(output.status.success());
    let found = parse_detect(&String::from_utf8_lossy(&output.stdout));
    if std::path::Path::new("/usr/bin/apt-get").exists() {
        assert_eq!(found, Some(Manager::Apt));
    }
}

#[test]
fn select_applies_everything_under_an_empty_policy() {
    let all = vec![upgrade("a", false), upgrade("b", true)];
    let selection = select(all.clone(), &Update::default());
    assert_eq!(selection.apply, all);
    assert!(selection.left.is_empty());
}

#[test]
fn select_security_only() {
    let selection = select(
        vec![
            upgrade("nightshift-fixture-app", false),
            upgrade("nightshift-fixture-lib", true),
            upgrade("nightshift-fixture-kernel", false),
        ],
        &policy(true, &[], &[], &[]),
    );
    assert_eq!(names(&selection.apply), ["nightshift-fixture-lib"]);
    assert_eq!(
        left(&selection),
        [
            ("nightshift-fixture-app", "not a security update"),
            ("nightshift-fixture-kernel", "not a security update"),
        ]
    );
}

#[test]
fn select_hold_deny_allow_with_globs_and_their_order() {
    let all = vec![
        upgrade("postgresql-15", true),
        upgrade("postgresql-client-15", false),
        upgrade("libssl3", true),
        upgrade("openssl", true),
        upgrade("linux-image-amd64", true),
        upgrade("bash", false),
        upgrade("libc6:i386", true),
    ];
    let selection = select(
        all,
        &policy(
            true,
            &["postgresql*"],
            &["lib*", "openssl", "linux-image-*", "postgresql-15", "libc6"],
            &["linux-image-?md64", "openssl"],
        ),
    );
    assert_eq!(names(&selection.apply), ["libssl3", "libc6:i386"]);
    assert_eq!(
        left(&selection),
        [
            // hold wins over allow and security
            ("postgresql-15", "held"),
            ("postgresql-client-15", "held"),
            // deny wins over allow
            ("openssl", "denied"),
            ("linux-image-amd64", "denied"),
            ("bash", "not allowed"),
        ]
    );
}

#[test]
fn select_not_allowed_comes_before_not_security() {
    let selection = select(
        vec![upgrade("vim", false)],
        &policy(true, &[], &["bash"], &[]),
    );
    assert_eq!(left(&selection), [("vim", "not allowed")]);
}

#[test]
fn select_treats_a_broken_glob_as_a_literal_name() {
    let selection = select(
        vec![upgrade("weird[", false), upgrade("weird", false)],
        &policy(false, &["weird["], &[], &[]),
    );
    assert_eq!(names(&selection.apply), ["weird"]);
    assert_eq!(left(&selection), [("weird[", "held")]);
}

#[test]
fn names_are_shell_quoted_and_options_left_out() {
    let odd = vec![
        "libfoo".to_string(),
        "it's".to_string(),
        "a b".to_string(),
        "$(reboot)".to_string(),
        "--purge".to_string(),
        String::new(),
    ];
    assert_eq!(quoted(&odd), r"'libfoo' 'it'\''s' 'a b' '$(reboot)'");
    for manager in Manager::ALL {
        let apply = manager.apply(&odd);
        assert!(
            apply.contains(r"'it'\''s' 'a b' '$(reboot)'"),
            "{manager}: {apply}"
        );
        assert!(!apply.contains("--purge"), "{manager}: {apply}");
        assert!(manager.installed(&odd).contains("'$(reboot)'"));
        if let Some(hold) = manager.hold(&odd) {
            assert!(hold.contains("'$(reboot)'"));
        }
    }
}

#[test]
fn quoted_names_survive_a_real_shell() {
    let odd = ["it's", "a b", "$(echo pwned)", "back\\slash", "*"].map(String::from);
    let Ok(output) = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {}", quoted(&odd)))
        .output()
    else {
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "it's\na b\n$(echo pwned)\nback\\slash\n*\n"
    );
}

#[test]
fn apply_without_names_does_nothing() {
    for manager in Manager::ALL {
        assert_eq!(manager.apply(&[]), "true");
        assert_eq!(manager.apply(&["-x".to_string()]), "true");
        assert_eq!(manager.hold(&[]), None);
    }
}

#[test]
fn apply_never_prompts() {
    let names = ["pkg".to_string()];
    let apt = Manager::Apt.apply(&names);
    for part in [
        "DEBIAN_FRONTEND=noninteractive",
        "NEEDRESTART_MODE=a",
        "apt-get install -y -q --only-upgrade --no-remove",
        "-o Dpkg::Options::=--force-confdef",
        "-o Dpkg::Options::=--force-confold",
        "-- 'pkg'",
    ] {
        assert!(apt.contains(part), "{apt}");
    }
    assert!(Manager::Dnf.apply(&names).contains("dnf -y "));
    assert!(
        Manager::Zypper
            .apply(&names)
            .contains("zypper --non-interactive ")
    );
    assert!(Manager::Apk.apply(&names).contains("apk "));
    assert_eq!(
        Manager::Apt.hold(&names).as_deref(),
        Some("LC_ALL=C apt-mark hold -- 'pkg'")
    );
    assert_eq!(
        Manager::Zypper.hold(&names).as_deref(),
        Some("LC_ALL=C zypper --non-interactive addlock 'pkg'")
    );
    assert_eq!(Manager::Dnf.hold(&names), None);
    assert_eq!(Manager::Apk.hold(&names), None);
}

#[test]
fn every_command_is_in_the_c_locale() {
    let names = ["pkg".to_string()];
    for manager in Manager::ALL {
        for command in [
            manager.refresh(),
            manager.list_upgrades(),
            manager.apply(&names),
            manager.installed(&names),
            manager.installed(&[]),
        ] {
            assert!(command.contains("LC_ALL=C"), "{manager}: {command}");
        }
    }
}

/// Written, not recorded (no machine here has rpm): the lines are what
/// [`rpm_installed`]'s query format prints, and `package X is not
/// installed` is rpm's own wording for a missing name.
#[test]
fn rpm_installed_keeps_the_newest_and_skips_missing() {
    let stdout = include_str!("fixtures/rpm-query.txt");
    for manager in [Manager::Dnf, Manager::Zypper] {
        let installed = manager.parse_installed(stdout).expect("rpm output");
        assert_eq!(installed.len(), 3);
        assert_eq!(installed["bash"], "5.1.8-9.el9");
        assert_eq!(installed["openssl-libs"], "1:3.0.7-27.el9");
        assert_eq!(installed["kernel-core"], "5.14.0-503.15.1.el9_5");
        assert!(!installed.contains_key("nightshift-nosuch"));
    }
    assert_eq!(Manager::Dnf.parse_installed(""), Ok(BTreeMap::new()));
    assert!(matches!(
        Manager::Dnf.parse_installed("error: rpmdb open failed\n"),
        Err(PackageError::Unreadable { .. })
    ));
    assert!(Manager::Dnf.installed(&[]).ends_with(" -a"));
    assert!(
        Manager::Zypper
            .installed(&["bash".to_string()])
            .ends_with("'bash' || true")
    );
}

#[test]
fn errors_say_what_to_do() {
    let error = PackageError::WouldRemove {
        count: 1,
        packages: vec!["scratch-victim".to_string()],
    };
    let text = error.to_string();
    assert!(text.contains("scratch-victim"), "{text}");
    assert!(text.contains("by hand"), "{text}");
    let long = "x".repeat(500);
    assert_eq!(excerpt(&long).chars().count(), 203);
    assert_eq!(excerpt("é".repeat(300).as_str()).chars().count(), 203);
}

mod property {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s).{0,400}") {
            for manager in Manager::ALL {
                let _ = manager.parse_upgrades(&text);
                let _ = manager.parse_installed(&text);
            }
            let _ = parse_detect(&text);
            let _ = parse_reboot_probe(&text);
        }

        #[test]
        fn parsers_never_panic_on_near_misses(
            lines in prop::collection::vec(
                prop_oneof![
                    "Inst [a-z:]{0,6} ?\\[?[0-9.~:]{0,5}\\]? ?\\(?[0-9a-z .:/,\\[\\]-]{0,30}\\)?",
                    "Remv [a-z]{0,5}",
                    "[0-9]{0,3} upgraded, [0-9]{0,3} newly installed, [0-9]{0,3} to remove and [0-9]{0,3} not upgraded\\.",
                    "[a-z.-]{0,10}\\.[a-z0-9_]{0,6} +[0-9:.~-]{0,8} +[a-z@-]{0,8}",
                    "@nightshift-security@",
                    "Obsoleting Packages",
                    "[vS]? *\\|[ a-z|]{0,30}",
                    "The following [0-9] packages? (is|are) going to be upgraded:",
                    "  [a-z ]{0,20}",
                    "[a-z0-9.-]{0,12} x86_64 \\{[a-z]{0,5}\\}? \\([A-Z ]{0,5}\\)? \\[(upgradable from: [a-z0-9.-]{0,10}|installed)\\]?",
                    "[a-z]{0,5}\t[a-z0-9]{0,5}\t[0-9.:~-]{0,6}\t[a-z ]{0,3}",
                    "(reboot-required|reboot-required-pkg|running-kernel|boot-kernel|modules-kernel|NEEDRESTART-K[A-Z]{3,4}): ?[0-9a-z.-]{0,12}",
                ],
                0..12,
            )
        ) {
            let text = lines.join("\n");
            for manager in Manager::ALL {
                let _ = manager.parse_upgrades(&text);
                let _ = manager.parse_installed(&text);
            }
            let _ = parse_reboot_probe(&text);
        }
    }
}
