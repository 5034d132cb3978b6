//! The Prometheus text endpoint (`--metrics-listen`): figures read from the
//! catalog at each scrape, so they agree with `nightshift runs` and survive
//! a restart of the daemon.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use nightshift_catalog::{Catalog, Figures};

use crate::DaemonError;

/// Serves `/metrics` on `addr` until the daemon ends.
pub async fn serve(addr: SocketAddr, catalog: Catalog) -> Result<(), DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Metrics { addr, source })?;
    tracing::info!(%addr, "serving metrics at /metrics");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(catalog);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(%err, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

async fn scrape(State(catalog): State<Catalog>) -> impl IntoResponse {
    match catalog.figures().await {
        Ok(figures) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(&figures, Utc::now()),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("cannot read the catalog: {err}\n"),
        ),
    }
}

/// The exposition text of `figures` at `now`.
pub fn render(figures: &Figures, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "nightshift_runs_total",
        "counter",
        "Runs recorded in the catalog, by outcome.",
    );
    for (outcome, count) in &figures.runs {
        sample(
            &mut out,
            "nightshift_runs_total",
            "outcome",
            outcome,
            *count,
        );
    }
    family(
        &mut out,
        "nightshift_hosts",
        "gauge",
        "Hosts by the status of their last job.",
    );
    for (status, count) in &figures.hosts {
        sample(
            &mut out,
            "nightshift_hosts",
            "last_job_status",
            status,
            *count,
        );
    }
    family(
        &mut out,
        "nightshift_runs_in_progress",
        "gauge",
        "Runs going now.",
    );
    let _ = writeln!(
        out,
        "nightshift_runs_in_progress {}",
        figures.runs_in_progress
    );
    ages(&mut out, figures, now);
    family(
        &mut out,
        "nightshift_steps_in_flight",
        "gauge",
        "Steps running now.",
    );
    let _ = writeln!(
        out,
        "nightshift_steps_in_flight {}",
        figures.steps_in_flight
    );
    out
}

fn ages(out: &mut String, figures: &Figures, now: DateTime<Utc>) {
    let age = |at: &Option<String>| {
        at.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (now - t.to_utc()).num_seconds().max(0))
    };
    for (name, help, pick) in [
        (
            "nightshift_last_patch_age_seconds",
            "Seconds since the host's last successful update step.",
            0,
        ),
        (
            "nightshift_last_backup_age_seconds",
            "Seconds since the host's last backup.",
            1,
        ),
    ] {
        family(out, name, "gauge", help);
        for (host, patch, backup) in &figures.ages {
            let at = if pick == 0 { patch } else { backup };
            if let Some(seconds) = age(at) {
                sample(out, name, "host", host, seconds);
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, label: &str, value: &str, count: i64) {
    let value = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_become_exposition_text_with_escaped_labels() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("time")
            .to_utc();
        let figures = Figures {
            runs: vec![("failed".into(), 1), ("ok".into(), 3)],
            runs_in_progress: 1,
            hosts: vec![("ok".into(), 2)],
            ages: vec![
                (
                    "web\"1".into(),
                    Some("2026-12-01T11:00:00.000Z".into()),
                    None,
                ),
                ("web2".into(), None, Some("2026-12-01T11:59:00.000Z".into())),
            ],
            steps_in_flight: 4,
        };
        let text = render(&figures, now);
        for line in [
            "# TYPE nightshift_runs_total counter",
            "nightshift_runs_total{outcome=\"ok\"} 3",
            "nightshift_runs_total{outcome=\"failed\"} 1",
            "nightshift_hosts{last_job_status=\"ok\"} 2",
            "nightshift_last_patch_age_seconds{host=\"web\\\"1\"} 3600",
            "nightshift_last_backup_age_seconds{host=\"web2\"} 60",
            "nightshift_steps_in_flight 4",
            "nightshift_runs_in_progress 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("nightshift_last_backup_age_seconds{host=\"web\\\"1\"}"));
    }
}
