//! The compliance report's HTML in a real browser: Debian's headless
//! Chromium takes an A4-sized screenshot of it, dumps the DOM it built and
//! prints it to PDF.
//!
//! Without Chromium the test says it was skipped, except under `CI=true`,
//! where it fails: there `tests/install-deps` should have installed it.

#![allow(
    clippy::print_stdout,
    reason = "the test says whether chromium ran or was skipped"
)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use nightshift_catalog::{AppliedUpdate, FailedJob, HostFacts, HostTrail, PendingUpdate};
use nightshift_plan::{Config, Policy, Source};
use nightshift_report::{Evidence, Fleet, Report, Status, build, html};

/// The screenshot's size: A4's proportions at 150 px per inch.
const WIDTH: u32 = 1240;
const HEIGHT: u32 = 1754;
/// Chromium normally finishes in a second or two; past this it is hung.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn report_renders_in_chromium() {
    let Some(chromium) = browser() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed; run tests/install-deps (as root) to install it");
        }
        println!(
            "skipped: chromium (or chromium-browser) is not on PATH; tests/install-deps installs it"
        );
        return;
    };
    let started = Instant::now();
    let report = report();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let page = dir.path().join("compliance.html");
    std::fs::write(&page, html(&report)).expect("the HTML is written");
    let url = format!("file://{}", page.display());

    let shot = dir.path().join("compliance.png");
    run(
        &chromium,
        dir.path(),
        "screenshot",
        &[&format!("--screenshot={}", shot.display()), &url],
    );
    check_screenshot(&shot);

    let dom = run(&chromium, dir.path(), "dom", &["--dump-dom", &url]);
    check_dom(&dom, &report);

    let pdf = dir.path().join("compliance.pdf");
    let print = format!("--print-to-pdf={}", pdf.display());
    run(
        &chromium,
        dir.path(),
        "print",
        &["--no-pdf-header-footer", &print, &url],
    );
    check_pdf(&pdf);
    println!(
        "chromium rendered, dumped and printed the report ({} hosts, {}) in {:.1} s",
        report.hosts_total,
        percent(&report),
        started.elapsed().as_secs_f64()
    );
}

/// `chromium` (Debian's package) or `chromium-browser`, from PATH.
fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| {
                candidate
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

/// Runs headless Chromium with its profile, home and caches in `dir`, and
/// returns what it wrote on stdout; kills it after [`LIMIT`].
fn run(chromium: &Path, dir: &Path, what: &str, args: &[&str]) -> String {
    let profile = dir.join(format!("profile-{what}"));
    let stdout = dir.join(format!("{what}.out"));
    let stderr = dir.join(format!("{what}.err"));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("a file for chromium's output"))
        .stderr(File::create(&stderr).expect("a file for chromium's messages"))
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("chromium can be waited for") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ({what}) still running after {LIMIT:?}; killed{}",
                tail(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium ({what}) failed: {status}{}",
        tail(&stderr)
    );
    std::fs::read_to_string(&stdout).expect("chromium's output is text")
}

/// The last lines chromium wrote on stderr, for a failure message.
fn tail(stderr: &Path) -> String {
    let text = std::fs::read_to_string(stderr).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("\n{}", lines[lines.len().saturating_sub(20)..].join("\n"))
}

/// A PNG of the window's size with a page on it: more than a blank or a
/// single-colour error screen.
fn check_screenshot(shot: &Path) {
    let file = File::open(shot).expect("chromium wrote the screenshot");
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let size = reader
        .output_buffer_size()
        .expect("the PNG's size fits in memory");
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).expect("the PNG decodes");
    assert_eq!(
        (frame.width, frame.height),
        (WIDTH, HEIGHT),
        "screenshot size"
    );
    let channels = frame.color_type.samples();
    let mut colours = HashSet::new();
    let mut inked = 0usize;
    for pixel in pixels[..frame.buffer_size()].chunks_exact(channels) {
        let rgb = if channels >= 3 {
            [pixel[0], pixel[1], pixel[2]]
        } else {
            [pixel[0]; 3]
        };
        colours.insert(rgb);
        inked += usize::from(rgb.iter().any(|&c| c < 240));
    }
    let share = inked as f64 / f64::from(WIDTH * HEIGHT);
    assert!(
        share > 0.01,
        "the screenshot is nearly blank: {:.2}% non-white",
        share * 100.0
    );
    assert!(
        colours.len() > 10,
        "the screenshot has only {} colours",
        colours.len()
    );
}

/// Printed, every page is A4 (595 × 842 pt): the page's `@page` rule,
/// since Chromium's own default is US Letter.
fn check_pdf(pdf: &Path) {
    let bytes = std::fs::read(pdf).expect("chromium wrote the PDF");
    assert!(bytes.starts_with(b"%PDF"), "not a PDF");
    let text = String::from_utf8_lossy(&bytes);
    let boxes: Vec<Vec<f64>> = text
        .match_indices("/MediaBox [")
        .map(|(at, found)| {
            let rest = &text[at + found.len()..];
            let numbers = rest.split(']').next().unwrap_or_default();
            numbers
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .collect();
    assert!(!boxes.is_empty(), "no pages found in the PDF");
    for page in &boxes {
        let a4 = page.len() == 4 && (page[2] - 595.3).abs() < 1.5 && (page[3] - 841.9).abs() < 1.5;
        assert!(a4, "a page is not A4: {page:?}");
    }
}

/// The DOM Chromium built holds the headline figures and a finding. Text
/// is serialised with `&`, `<` and `>` escaped, as the renderer wrote it.
fn check_dom(dom: &str, report: &Report) {
    let expect = |text: &str, what: &str| {
        assert!(dom.contains(text), "the DOM lacks {what}: {text:?}\n{dom}");
    };
    expect(
        &format!("fleet {} hosts", report.hosts_total),
        "the host count",
    );
    expect(
        &format!(">{}</span>", percent(report)),
        "the overall percent",
    );
    expect(
        &format!(
            "<b>{}/{}</b>",
            report.overall.compliant, report.overall.total
        ),
        "compliant/total",
    );
    let web1 = report
        .hosts
        .iter()
        .find(|h| h.host == "web1")
        .expect("web1 is in the report");
    let late = web1
        .checks
        .iter()
        .find(|c| c.policy == Policy::PatchSecurity)
        .expect("web1 has a security patch check");
    assert_eq!(late.status, Status::NonCompliant, "{late:?}");
    expect("<td>web1</td><td>patch_security</td>", "web1's finding");
    let reason = late
        .reason
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    expect(&reason, "web1's reason");
    expect("nightshift runs show 412", "web1's run");
    expect("<b>openssl</b> 3.0.15-1~deb12u1", "web1's pending update");
    expect(
        "end of support extended by the vendor",
        "the exception's reason",
    );
    expect("<svg class=\"chart\"", "the charts");
    expect("nightshift report compliance", "the footer");
}

fn percent(report: &Report) -> String {
    format!("{:.1}%", report.overall.percent)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 6, 0, 0)
        .single()
        .expect("a valid moment")
}

fn hours(n: i64) -> chrono::Duration {
    chrono::Duration::hours(n)
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// A host that meets every policy at `at`.
fn fine(host: &str, at: DateTime<Utc>) -> HostFacts {
    HostFacts {
        host: host.into(),
        last_seen: Some(at - hours(4)),
        last_backup: Some(at - hours(6)),
        last_restore_test: Some(at - days(3)),
        last_backup_check: Some(at - days(2)),
        ..HostFacts::default()
    }
}

/// Six hosts: db1 compliant; db2 with a fresh security update (within
/// SLA); web1 with security updates pending 20 days; web2 whose backups
/// fail; legacy1 exempt from the reboot policy; new1 never seen.
fn report() -> Report {
    let at = now();
    let names = ["db1", "db2", "legacy1", "new1", "web1", "web2"];
    let fleet = Fleet {
        hosts: names.iter().map(|h| h.to_string()).collect(),
        groups: BTreeMap::from([(
            "legacy1".to_string(),
            BTreeSet::from(["legacy".to_string()]),
        )]),
        scheduled: names
            .iter()
            .filter(|h| **h != "new1")
            .map(|h| h.to_string())
            .collect(),
        group: None,
    };
    let config = Config::parse(&Source::new(
        "nightshift.toml",
        "[[exception]]\ngroup = \"legacy\"\npolicies = [\"reboot\"]\n\
         reason = \"end of support extended by the vendor; reboot in the July window\"\n\
         expires = 2025-07-31\n",
    ))
    .expect("the exception parses");
    let evidence = Evidence {
        as_of: at,
        facts: facts(at),
        earlier: (1..=4)
            .rev()
            .map(|w| {
                let then = at - days(7 * w);
                let mut facts = facts(then);
                facts.truncate(usize::try_from(6 - w).unwrap_or(0).max(2));
                (then, facts)
            })
            .collect(),
        pending: pending(at),
        trails: trails(),
        applied: applied(at),
        known: facts(at).into_iter().map(|f| f.host).collect(),
        period_start: at - days(28),
    };
    build(&fleet, &config.policy, &config.exceptions, &evidence)
}

fn facts(at: DateTime<Utc>) -> Vec<HostFacts> {
    let mut db2 = fine("db2", at);
    db2.security_pending_since = Some(at - days(3));
    let mut legacy = fine("legacy1", at);
    legacy.reboot_pending_since = Some(at - days(12));
    let mut web1 = fine("web1", at);
    web1.security_pending_since = Some(at - days(20));
    let mut web2 = fine("web2", at);
    web2.last_backup = Some(at - days(3) - hours(4));
    vec![fine("db1", at), db2, legacy, web1, web2]
}

fn pending(at: DateTime<Utc>) -> Vec<PendingUpdate> {
    let update = |host: &str, package: &str, version: &str, age: i64| PendingUpdate {
        host: host.into(),
        package: package.into(),
        version: version.into(),
        security: true,
        since: at - days(age),
    };
    vec![
        update("db2", "curl", "7.88.1-10+deb12u12", 3),
        update("web1", "openssl", "3.0.15-1~deb12u1", 20),
        update("web1", "libc6", "2.36-9+deb12u10", 16),
    ]
}

fn trails() -> BTreeMap<String, HostTrail> {
    BTreeMap::from([
        (
            "web1".to_string(),
            HostTrail {
                last_patch_run: Some(412),
                ..HostTrail::default()
            },
        ),
        (
            "web2".to_string(),
            HostTrail {
                last_backup_run: Some(398),
                failed_since_backup: Some(FailedJob {
                    run: 431,
                    status: "failed".into(),
                    error_kind: Some("unreachable".into()),
                    detail: None,
                }),
                ..HostTrail::default()
            },
        ),
        (
            "legacy1".to_string(),
            HostTrail {
                reboot_reason: Some("linux-image-6.1.0-37-amd64 installed".into()),
                ..HostTrail::default()
            },
        ),
    ])
}

fn applied(at: DateTime<Utc>) -> Vec<AppliedUpdate> {
    [
        (1, "db1"),
        (1, "db2"),
        (2, "web2"),
        (6, "db1"),
        (10, "web2"),
        (25, "legacy1"),
        (40, "web1"),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(waited, host))| {
        let applied = at - days(i64::try_from(i).unwrap_or(0) * 3 + 1);
        AppliedUpdate {
            host: host.into(),
            package: format!("package{i}"),
            pending_since: applied - days(waited),
            applied,
        }
    })
    .collect()
}
