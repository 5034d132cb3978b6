use std::collections::BTreeMap;

use chrono::{Duration, TimeZone};
use nightshift_catalog::{HostFacts, HostTrail, PendingUpdate};
use nightshift_plan::{Config, Source};

use super::*;
use crate::{Evidence, Fleet, build};

const NASTY_HOST: &str = "web<script>alert('x')</script>";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0)
        .single()
        .expect("a valid moment")
}

fn fine(host: &str, now: DateTime<Utc>) -> HostFacts {
    HostFacts {
        host: host.into(),
        last_seen: Some(now - Duration::hours(3)),
        last_backup: Some(now - Duration::hours(5)),
        last_restore_test: Some(now - Duration::days(2)),
        last_backup_check: Some(now - Duration::days(1)),
        ..HostFacts::default()
    }
}

/// Three scheduled hosts: one compliant, one with an old security
/// update and a reboot pending for a reason with markup in it, one
/// exempt from the restore test.
fn report(group: Option<&str>) -> Report {
    let now = at();
    let hosts = ["db1", NASTY_HOST, "mail&co"];
    let mut late = fine(NASTY_HOST, now);
    late.security_pending_since = Some(now - Duration::days(20));
    late.reboot_pending_since = Some(now - Duration::days(9));
    let mut untested = fine("mail&co", now);
    untested.last_restore_test = None;
    let mut trails = BTreeMap::new();
    trails.insert(
        NASTY_HOST.to_string(),
        HostTrail {
            last_patch_run: Some(412),
            reboot_reason: Some("kernel <script>bad()</script> & \"libc\"".into()),
            ..HostTrail::default()
        },
    );
    let fleet = Fleet {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        scheduled: hosts.iter().map(|h| h.to_string()).collect(),
        group: group.map(str::to_string),
        ..Fleet::default()
    };
    let evidence = Evidence {
        as_of: now,
        facts: vec![fine("db1", now), late.clone(), untested],
        earlier: vec![(
            now - Duration::days(7),
            vec![fine("db1", now), fine(NASTY_HOST, now)],
        )],
        pending: vec![PendingUpdate {
            host: NASTY_HOST.into(),
            package: "openssl<x>".into(),
            version: "3.0.15-1~deb12u1".into(),
            security: true,
            since: now - Duration::days(20),
        }],
        trails,
        applied: Vec::new(),
        known: hosts.iter().map(|h| h.to_string()).collect(),
        period_start: now - Duration::days(7),
    };
    let config = Config::parse(&Source::new(
        "n.toml",
        "[[exception]]\nhost = \"mail&co\"\npolicies = [\"restore_test\"]\n\
         reason = \"restore target <rebuilt> in July\"\nexpires = 2025-07-31\n",
    ))
    .expect("the exception parses");
    build(&fleet, &config.policy, &config.exceptions, &evidence)
}

#[test]
fn escapes_the_five_characters() {
    assert_eq!(
        escape(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
    assert_eq!(escape("plain ≤ 14 d"), "plain ≤ 14 d");
}

#[test]
fn report_text_comes_out_escaped() {
    let doc = html(&report(None));
    assert!(!doc.contains("<script"), "unescaped markup in:\n{doc}");
    assert!(doc.contains("web&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(doc.contains("kernel &lt;script&gt;bad()&lt;/script&gt; &amp; &quot;libc&quot;"));
    assert!(doc.contains("<b>openssl&lt;x&gt;</b> 3.0.15-1~deb12u1 · pending 20 d"));
    assert!(doc.contains("mail&amp;co"));
    assert!(doc.contains("restore target &lt;rebuilt&gt; in July"));
}

#[test]
fn self_contained() {
    let doc = html(&report(None));
    for external in [
        "http://", "https://", "src=", "<link", "url(", "@import", "<script",
    ] {
        assert!(!doc.contains(external), "{external} in the document");
    }
    assert!(doc.contains("@page { size: A4;"));
    assert!(doc.contains("break-inside: avoid"));
}

#[test]
fn headline_charts_and_tables() {
    let r = report(Some("web&db"));
    let doc = html(&r);
    assert_eq!(r.hosts_total, 3);
    assert_eq!(r.overall.compliant, 2);
    assert!(
        doc.contains("Compliance — fleet 3 hosts (group web&amp;db) · as of 2025-06-02 09:00 UTC")
    );
    assert!(doc.contains(">66.7%</span>"));
    assert!(doc.contains("<b>2/3</b> hosts"));
    assert!(doc.contains("1 of them by an exception"));
    // one bar per policy and the overall row, the trend and time to patch
    assert_eq!(
        doc.matches("<svg class=\"bar\"").count(),
        r.policies.len() + 1
    );
    assert_eq!(doc.matches("<svg class=\"chart\"").count(), 2);
    assert!(doc.contains("<code>nightshift runs show 412</code>"));
    assert!(doc.contains("<td class=\"num\">2025-07-31</td>"));
    assert!(doc.contains(">exempt</td>"));
    assert!(doc.contains(">✗</td>"));
    assert!(doc.contains("nightshift report compliance"));
    assert!(doc.trim_end().ends_with("</html>"));
}

#[test]
fn an_empty_fleet_renders() {
    let fleet = Fleet::default();
    let report = build(&fleet, &Default::default(), &[], &Evidence::default());
    let doc = html(&report);
    assert!(doc.contains("fleet 0 hosts"));
    assert!(doc.contains(">100.0%</span>"));
    assert!(doc.contains("Every host complies with every policy"));
    assert!(doc.contains("No host is exempt"));
}
