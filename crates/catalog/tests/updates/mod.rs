//! Pending updates: when each was first seen, kept until applied, and an
//! update that turns into a security one.

use nightshift_catalog::{PackageChange, PackageState};

use crate::{at, fresh, patch_run};

#[tokio::test]
async fn pending_updates_keep_when_they_were_first_seen_until_applied() {
    let (_dir, catalog) = fresh().await;
    let run = patch_run(&catalog).await;
    let pending = |version: &str| {
        vec![
            PackageState {
                name: "openssl".into(),
                installed: Some("3.0.1".into()),
                upgradable: Some(version.into()),
                security: true,
            },
            PackageState {
                name: "curl".into(),
                installed: Some("7.88".into()),
                upgradable: None,
                security: false,
            },
        ]
    };
    catalog
        .record_packages("web1", &pending("3.0.2"), at(1))
        .await
        .expect("seen");
    catalog
        .record_packages("web1", &pending("3.0.3"), at(5))
        .await
        .expect("seen again");
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert_eq!((web1.pending_updates, web1.pending_security), (1, 1));
    assert!(
        web1.oldest_pending_security
            .as_deref()
            .is_some_and(|t| t.starts_with("2026-11-20T01")),
        "pending since it was first seen, not last: {web1:?}"
    );

    let detail = catalog
        .run_detail(run.0)
        .await
        .expect("detail")
        .expect("run");
    let job = nightshift_catalog::JobId(detail.jobs[0].id);
    let change = PackageChange {
        name: "openssl".into(),
        from: Some("3.0.1".into()),
        to: Some("3.0.3".into()),
        security: true,
    };
    catalog
        .record_package_changes(job, "web1", &[change], at(6))
        .await
        .expect("changes");
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert_eq!(web1.pending_security, 0);
    let history = catalog.history("web1", 0).await.expect("history");
    let patch = history
        .iter()
        .find(|e| e.kind == "patch")
        .expect("a patch event");
    assert_eq!(patch.detail, "openssl 3.0.1 -> 3.0.3 (security)");
    assert_eq!(patch.run_id, Some(run.0));

    catalog
        .set_reboot_required("web1", Some("kernel 6.1.0-27"), at(6))
        .await
        .expect("reboot");
    catalog
        .set_reboot_required("web1", Some("kernel 6.1.0-28"), at(8))
        .await
        .expect("reboot");
    let fleet = catalog.fleet_state().await.expect("fleet");
    let web1 = fleet.iter().find(|h| h.host == "web1").expect("web1");
    assert!(
        web1.reboot_required_since
            .as_deref()
            .is_some_and(|t| t.starts_with("2026-11-20T06"))
    );
    catalog
        .set_reboot_required("web1", None, at(9))
        .await
        .expect("rebooted");
    let fleet = catalog.fleet_state().await.expect("fleet");
    assert!(fleet.iter().all(|h| h.reboot_required_since.is_none()));
}

#[tokio::test]
async fn an_update_that_turns_into_a_security_one_starts_its_own_history() {
    let (_dir, catalog) = fresh().await;
    patch_run(&catalog).await;
    let offered = |security| {
        vec![PackageState {
            name: "libxml2".into(),
            installed: Some("2.9.14".into()),
            upgradable: Some("2.9.14+1".into()),
            security,
        }]
    };
    catalog
        .record_packages("web1", &offered(false), at(1))
        .await
        .expect("seen");
    catalog
        .record_packages("web1", &offered(true), at(5))
        .await
        .expect("seen again");
    let web1 = |facts: Vec<nightshift_catalog::HostFacts>| {
        facts
            .into_iter()
            .find(|f| f.host == "web1")
            .expect("web1 is known")
    };
    let before = web1(catalog.host_facts(at(4)).await.expect("facts"));
    assert_eq!(
        before.security_pending_since, None,
        "not a security update then"
    );
    assert_eq!(before.other_pending_since, Some(at(1)));
    let after = web1(catalog.host_facts(at(6)).await.expect("facts"));
    assert_eq!(after.security_pending_since, Some(at(5)));
    assert_eq!(after.other_pending_since, None);
}
