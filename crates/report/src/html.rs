//! One self-contained HTML file: no external assets, inline SVG charts,
//! readable on screen and printed on A4.
//!
//! Built by hand with `std::fmt::Write` rather than a template crate: it is
//! one page, and every piece of report text goes through [`escape`] in one
//! place, so there is no second escaping convention to get wrong.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use nightshift_plan::Policy;

use crate::model::{Check, HostRow, PendingItem, PolicyFigure, Report, Status, TimeToPatch};

/// Light colours and black text: it prints in black and white, and every
/// verdict is also written out, never shown by colour alone.
const STYLE: &str = "
@page { size: A4; margin: 14mm 12mm 16mm 12mm; }
html { color: #111; background: #fff; }
body { font: 10pt/1.4 system-ui, 'DejaVu Sans', Arial, sans-serif; max-width: 186mm;
  margin: 0 auto; padding: 8mm 4mm; }
h1 { font-size: 15pt; margin: 0 0 2mm; font-weight: 600; }
h2 { font-size: 12pt; margin: 7mm 0 2mm; border-bottom: 1.5px solid #333;
  break-after: avoid; page-break-after: avoid; }
p { margin: 1mm 0 2mm; }
.overall { display: flex; align-items: baseline; gap: 4mm; margin: 3mm 0 1mm; }
.overall .figure { font-size: 34pt; font-weight: 700; line-height: 1; }
.overall .what { font-size: 13pt; }
.muted { color: #555; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; }
th, td { text-align: left; vertical-align: top; padding: 1.2mm 2mm; border-bottom: 0.6px solid #bbb; }
th { border-bottom: 1.2px solid #333; font-weight: 600; }
thead { display: table-header-group; }
tfoot td { border-top: 1.2px solid #333; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mark, th.mark { text-align: center; white-space: nowrap; }
table.hosts th.mark { font-size: 8pt; font-weight: 600; white-space: normal; padding: 1mm 0.8mm; }
table.trend td, table.trend th { font-size: 8.5pt; padding: 0.8mm 1.2mm; }
tr, svg, figure, li { break-inside: avoid; page-break-inside: avoid; }
figure { margin: 2mm 0 3mm; }
figcaption { font-size: 9pt; color: #444; }
svg.chart { max-width: 100%; height: auto; }
svg text { font: 10px system-ui, 'DejaVu Sans', Arial, sans-serif; fill: #222; }
code { font: 9pt ui-monospace, 'DejaVu Sans Mono', monospace; white-space: nowrap; }
ul.pending { margin: 0.5mm 0 0; padding-left: 4mm; font-size: 9pt; }
.yes { color: #17602a; }
.no { color: #9b1111; font-weight: 700; }
.exempt { color: #6b5200; font-style: italic; }
footer { margin-top: 8mm; padding-top: 2mm; border-top: 0.6px solid #999; font-size: 8.5pt; color: #444; }
@media print {
  body { max-width: none; padding: 0; font-size: 9.5pt; }
  h2 { margin-top: 5mm; }
}
";

/// The report as one HTML document.
pub fn html(report: &Report) -> String {
    let mut out = String::with_capacity(16 * 1024 + report.hosts.len() * 1024);
    head(&mut out, report);
    headline(&mut out, report);
    summary(&mut out, report);
    trend(&mut out, report);
    time_to_patch(&mut out, &report.time_to_patch);
    not_compliant(&mut out, report);
    exempt(&mut out, report);
    per_host(&mut out, report);
    footer(&mut out, report);
    out.push_str("</body>\n</html>\n");
    out
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted
/// attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn moment(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// As the terminal table shows it: `97.5%`.
fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

fn group_text(report: &Report) -> String {
    report
        .group
        .as_ref()
        .map(|g| format!(" (group {})", escape(g)))
        .unwrap_or_default()
}

fn head(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Compliance{} · as of {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        group_text(report),
        moment(report.as_of)
    );
}

fn headline(out: &mut String, report: &Report) {
    let o = &report.overall;
    let _ = writeln!(
        out,
        "<header>\n<h1>Compliance — fleet {} hosts{} · as of {}</h1>",
        report.hosts_total,
        group_text(report),
        moment(report.as_of)
    );
    let exempt = if o.exempt > 0 {
        format!(", {} of them by an exception", o.exempt)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<div class=\"overall\"><span class=\"figure\" id=\"overall\">{}</span>\
         <span class=\"what\">compliant with every policy</span></div>\n\
         <p><b>{}/{}</b> hosts compliant with (or exempt from) every one of {} policies{exempt}.</p>\n</header>",
        percent(o.percent),
        o.compliant,
        o.total,
        report.policies.len()
    );
}

fn summary(out: &mut String, report: &Report) {
    out.push_str(
        "<section>\n<h2>Policies</h2>\n<table class=\"summary\">\n<thead><tr><th>policy</th>\
         <th class=\"num\">compliant</th><th class=\"num\">percent</th><th class=\"num\">exempt</th>\
         <th></th></tr></thead>\n<tbody>\n",
    );
    for figure in &report.policies {
        summary_row(out, figure);
    }
    out.push_str("</tbody>\n<tfoot>\n");
    summary_row(out, &report.overall);
    out.push_str("</tfoot>\n</table>\n</section>\n");
}

fn summary_row(out: &mut String, f: &PolicyFigure) {
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td class=\"num\">{}/{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        escape(&f.label),
        f.compliant,
        f.total,
        percent(f.percent),
        if f.exempt > 0 {
            f.exempt.to_string()
        } else {
            "—".into()
        },
        bar(f.percent)
    );
}

/// Fill for a percentage: green when (nearly) all comply, amber, then red.
fn shade(p: f64) -> &'static str {
    if p >= 95.0 {
        "#5fa86e"
    } else if p >= 80.0 {
        "#d9a928"
    } else {
        "#d0605a"
    }
}

/// A small horizontal bar, 0–100%, outlined so it reads in grey too.
fn bar(p: f64) -> String {
    let width = p.clamp(0.0, 100.0);
    format!(
        "<svg class=\"bar\" width=\"120\" height=\"12\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{}\"><rect x=\"0\" y=\"0\" width=\"100\" height=\"10\" fill=\"#f1f1f1\"/>\
         <rect x=\"0\" y=\"0\" width=\"{width:.1}\" height=\"10\" fill=\"{}\"/>\
         <rect x=\"0\" y=\"0\" width=\"100\" height=\"10\" fill=\"none\" stroke=\"#555\" stroke-width=\"0.6\"/></svg>",
        percent(p),
        shade(p)
    )
}

/// Chart geometry: the plot area inside the SVG, in user units.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn plot_width(&self) -> f64 {
        self.width - self.left - self.right
    }

    fn plot_height(&self) -> f64 {
        self.height - self.top - self.bottom
    }

    fn open(&self, out: &mut String, label: &str) {
        let _ = writeln!(
            out,
            "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{l}\"><title>{l}</title>",
            w = self.width,
            h = self.height,
            l = escape(label)
        );
    }
}

const TREND: Frame = Frame {
    width: 680.0,
    height: 230.0,
    left: 44.0,
    right: 20.0,
    top: 22.0,
    bottom: 34.0,
};

fn trend(out: &mut String, report: &Report) {
    out.push_str("<section>\n<h2>Trend</h2>\n");
    let points = &report.trend;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        out.push_str("<p>No trend: the catalog has no earlier moments.</p>\n</section>\n");
        return;
    };
    out.push_str("<figure>\n");
    trend_chart(out, points);
    let _ = writeln!(
        out,
        "<figcaption>Hosts compliant with every policy, weekly, {} to {}.</figcaption>\n</figure>",
        day(first.at),
        day(last.at)
    );
    trend_table(out, report);
    out.push_str("</section>\n");
}

fn trend_chart(out: &mut String, points: &[crate::model::TrendPoint]) {
    let f = &TREND;
    let n = points.len();
    // Points stand clear of the axis labels and the right edge.
    let (inset, span) = (24.0, f.plot_width() - 48.0);
    let x = |i: usize| {
        if n <= 1 {
            f.left + f.plot_width() / 2.0
        } else {
            f.left + inset + span * i as f64 / (n - 1) as f64
        }
    };
    let y = |p: f64| f.top + f.plot_height() * (1.0 - p.clamp(0.0, 100.0) / 100.0);
    f.open(out, "overall compliance per week, 0 to 100%");
    for tick in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let _ = writeln!(
            out,
            "<line x1=\"{l}\" x2=\"{r}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"{s}\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{tick:.0}%</text>",
            l = f.left,
            r = f.width - f.right,
            y = y(tick),
            c = if tick == 0.0 { "#333" } else { "#d4d4d4" },
            s = if tick == 0.0 { 1.0 } else { 0.6 },
            tx = f.left - 6.0,
            ty = y(tick) + 3.5,
        );
    }
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.overall_percent)))
        .collect();
    let _ = writeln!(
        out,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#2f5f8a\" stroke-width=\"2\"/>",
        line.join(" ")
    );
    let every = n.div_ceil(12).max(1);
    for (i, p) in points.iter().enumerate() {
        let (px, py) = (x(i), y(p.overall_percent));
        let _ = write!(
            out,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"#2f5f8a\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}%</text>",
            py - 7.0,
            p.overall_percent
        );
        if i % every == 0 || i + 1 == n {
            let _ = write!(
                out,
                "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                f.height - f.bottom + 16.0,
                p.at.format("%d %b")
            );
        }
        out.push('\n');
    }
    out.push_str("</svg>\n");
}

/// Percent per policy and point, oldest first, like the chart.
fn trend_table(out: &mut String, report: &Report) {
    out.push_str("<table class=\"trend\">\n<thead><tr><th>policy</th>");
    for p in &report.trend {
        let _ = write!(out, "<th class=\"num\">{}</th>", p.at.format("%d %b"));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, figure) in report.policies.iter().enumerate() {
        let _ = write!(out, "<tr><td>{}</td>", escape(&figure.label));
        for p in &report.trend {
            match p.percent.get(i) {
                Some(v) => trend_cell(out, *v),
                None => out.push_str("<td class=\"num\">—</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n<tfoot><tr><td>every policy</td>");
    for p in &report.trend {
        trend_cell(out, p.overall_percent);
    }
    out.push_str("</tr></tfoot>\n</table>\n");
}

fn trend_cell(out: &mut String, v: f64) {
    let _ = write!(out, "<td class=\"num\">{v:.0}%</td>");
}

const PATCH: Frame = Frame {
    width: 480.0,
    height: 200.0,
    left: 20.0,
    right: 20.0,
    top: 22.0,
    bottom: 30.0,
};

fn time_to_patch(out: &mut String, t: &TimeToPatch) {
    let _ = writeln!(
        out,
        "<section>\n<h2>Time to patch</h2>\n<p>Security updates applied from {} to {}, by how long each \
         had been pending: <b>{}</b> in all.</p>\n<figure>",
        day(t.from),
        day(t.to),
        t.total
    );
    patch_chart(out, t);
    out.push_str("<figcaption>Security updates applied, by days pending before they were applied.</figcaption>\n</figure>\n</section>\n");
}

fn patch_chart(out: &mut String, t: &TimeToPatch) {
    let f = &PATCH;
    let buckets = [
        ("within 2 d", t.within_2_days),
        ("within 14 d", t.within_14_days),
        ("within 30 d", t.within_30_days),
        ("longer", t.longer),
    ];
    let most = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let slot = f.plot_width() / buckets.len() as f64;
    let base = f.height - f.bottom;
    f.open(out, "security updates applied, by time pending");
    for (i, (label, count)) in buckets.iter().enumerate() {
        let h = f.plot_height() * *count as f64 / most;
        let x = f.left + slot * i as f64 + slot * 0.18;
        let mid = f.left + slot * (i as f64 + 0.5);
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\" stroke=\"#333\" stroke-width=\"0.8\"/>\
             <text x=\"{mid:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{count}</text>\
             <text x=\"{mid:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            base - h,
            slot * 0.64,
            ["#7fb98a", "#a9cfe0", "#e8cf7f", "#e39a94"][i],
            base - h - 6.0,
            base + 18.0,
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#333\" stroke-width=\"1\"/>\n</svg>",
        f.left,
        f.width - f.right
    );
}

fn not_compliant(out: &mut String, report: &Report) {
    out.push_str("<section>\n<h2>Not compliant</h2>\n");
    let rows: Vec<(&HostRow, &Check)> = findings(report, Status::NonCompliant);
    if rows.is_empty() {
        out.push_str("<p>Every host complies with every policy (or is exempt).</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"findings\">\n<thead><tr><th>host</th><th>policy</th><th>reason</th><th>run</th></tr></thead>\n<tbody>\n",
    );
    for (host, check) in rows {
        let run = check
            .run
            .map(|r| format!("<code>nightshift runs show {r}</code>"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{run}</td></tr>",
            escape(&host.host),
            check.policy.name(),
            escape(&check.reason),
            pending_list(check)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// Every host's checks with this status, host by host.
fn findings(report: &Report, status: Status) -> Vec<(&HostRow, &Check)> {
    report
        .hosts
        .iter()
        .flat_map(|h| h.checks.iter().map(move |c| (h, c)))
        .filter(|(_, c)| c.status == status)
        .collect()
}

/// The pending updates of a patch policy, oldest first as the catalog has
/// them.
fn pending_list(check: &Check) -> String {
    let patch = matches!(check.policy, Policy::PatchSecurity | Policy::PatchOther);
    if !patch || check.pending.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"pending\">");
    for item in &check.pending {
        pending_item(&mut out, item);
    }
    out.push_str("</ul>");
    out
}

fn pending_item(out: &mut String, p: &PendingItem) {
    let _ = write!(
        out,
        "<li><b>{}</b> {} · pending {:.0} d (first seen {})</li>",
        escape(&p.package),
        escape(&p.version),
        p.age_days.floor(),
        day(p.since)
    );
}

fn exempt(out: &mut String, report: &Report) {
    out.push_str("<section>\n<h2>Exempt</h2>\n");
    let rows = findings(report, Status::Exempt);
    if rows.is_empty() {
        out.push_str("<p>No host is exempt from any policy.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"exempt-list\">\n<thead><tr><th>host</th><th>policy</th><th>exception</th>\
         <th>expires</th><th>finding</th></tr></thead>\n<tbody>\n",
    );
    for (host, check) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"muted\">{}</td></tr>",
            escape(&host.host),
            check.policy.name(),
            escape(check.exception.as_deref().unwrap_or("")),
            check
                .exception_expires
                .map(|d| d.to_string())
                .unwrap_or_default(),
            escape(&check.reason)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn per_host(out: &mut String, report: &Report) {
    out.push_str(
        "<section>\n<h2>Hosts</h2>\n<p class=\"muted\">✓ compliant · ✗ not compliant · exempt: covered by an exception.</p>\n\
         <table class=\"hosts\">\n<thead><tr><th>host</th><th class=\"mark\">all</th>",
    );
    for policy in Policy::ALL {
        let _ = write!(
            out,
            "<th class=\"mark\">{}</th>",
            policy.name().replace('_', " ")
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for host in &report.hosts {
        let (class, all) = if host.compliant {
            ("yes", "yes")
        } else {
            ("no", "no")
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"mark {class}\">{all}</td>",
            escape(&host.host)
        );
        for check in &host.checks {
            mark(out, check);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn mark(out: &mut String, check: &Check) {
    let (class, text) = match check.status {
        Status::Compliant => ("yes", "✓"),
        Status::NonCompliant => ("no", "✗"),
        Status::Exempt => ("exempt", "exempt"),
    };
    let _ = write!(
        out,
        "<td class=\"mark {class}\" title=\"{}\">{text}</td>",
        escape(&check.reason)
    );
}

fn footer(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "<footer>Generated by <code>nightshift report compliance</code> from the catalog as of {}{}: \
         {} hosts, {} policies. One self-contained file: nothing is fetched to show or print it.</footer>",
        moment(report.as_of),
        group_text(report),
        report.hosts_total,
        report.policies.len()
    );
}

#[cfg(test)]
mod tests;
