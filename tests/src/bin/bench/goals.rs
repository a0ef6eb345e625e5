//! Issue 9's goals, checked against the figures of this run. A goal whose figures were not
//! measured (scenario not run, path down) says so; nothing here fails the run.

use crate::report::{Better, Goal, Report, Row};
use crate::topology::Mode;
use crate::workloads::{S1, S4, S5, S6, S7, SERVER_CPU};

fn goal(text: &str, measured: Option<(String, bool)>) -> Goal {
    Goal {
        goal: text.to_owned(),
        measured: measured.as_ref().map(|(m, _)| m.clone()),
        met: measured.map(|(_, ok)| ok),
    }
}

fn value(row: Option<&Row>, mode: Mode) -> Option<f64> {
    row.and_then(|r| r.values.get(&mode).copied())
}

/// Added latency (hostmesh − direct) of a percentile at 1,000 rps, 16 connections.
fn added(report: &Report, quantile: &str, limit_us: f64) -> Option<(String, bool)> {
    let row = report.get(S1, "HTTP/1.1 1000 rps × 16 conn", quantile);
    let added = value(row, Mode::Hostmesh)? - value(row, Mode::Direct)?;
    let haproxy = value(row, Mode::Haproxy).zip(value(row, Mode::Direct));
    let text = match haproxy {
        Some((h, d)) => format!("{added:.0} µs (HAProxy pair: {:.0} µs)", h - d),
        None => format!("{added:.0} µs"),
    };
    Some((text, added <= limit_us))
}

/// The larger of the two proxies' values of `metric_a`/`metric_b`.
fn worst(report: &Report, scenario: &str, case: &str, metrics: [&str; 2]) -> Option<f64> {
    let a = value(report.get(scenario, case, metrics[0]), Mode::Hostmesh);
    let b = value(report.get(scenario, case, metrics[1]), Mode::Hostmesh);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

const RSS: [&str; 2] = ["RSS of host A's proxy", "RSS of host B's proxy"];
const PRIVATE: [&str; 2] = [
    "private RSS of host A's proxy",
    "private RSS of host B's proxy",
];

/// The worse proxy's RSS against `limit` MiB, with its private part beside it.
fn rss_with_private(
    report: &Report,
    scenario: &str,
    case: &str,
    limit: f64,
) -> Option<(String, bool)> {
    let rss = worst(report, scenario, case, RSS)?;
    let private = worst(report, scenario, case, PRIVATE)
        .map(|p| format!(" (private: {p:.1} MiB)"))
        .unwrap_or_default();
    Some((format!("{rss:.1} MiB{private}"), rss <= limit))
}
const CPU: [&str; 2] = [
    "CPU s per 1,000 requests, host A's proxy",
    "CPU s per 1,000 requests, host B's proxy",
];

pub fn check(report: &Report) -> Vec<Goal> {
    let per_idle = report
        .rows
        .iter()
        .filter(|r| r.scenario == S6 && r.metric == "per connection, host A's proxy")
        .filter_map(|r| Some((r.case.clone(), *r.values.get(&Mode::Hostmesh)?)))
        .next_back();
    let s7_case = "1,000 rps × 16 conn";
    let mut goals = vec![
        goal(
            "added p50 over direct at 1,000 rps (16 conn) ≤ 60 µs",
            added(report, "p50", 60.0),
        ),
        goal(
            "added p99 over direct at 1,000 rps ≤ 200 µs",
            added(report, "p99", 200.0),
        ),
        goal(
            "added p99.9 over direct at 1,000 rps ≤ 2 ms",
            added(report, "p99.9", 2000.0),
        ),
        goal(
            "CPU ≤ 0.05 vCPU per proxy per 1,000 rps",
            worst(report, S7, s7_case, CPU).map(|v| {
                let floor = value(report.get(S7, s7_case, SERVER_CPU), Mode::Direct)
                    .map(|f| format!("; the server alone: {f:.3}"))
                    .unwrap_or_default();
                (format!("{v:.3} (worse proxy{floor})"), v <= 0.05)
            }),
        ),
        goal(
            "proxy RSS ≤ 8 MB idle",
            rss_with_private(report, S6, "at start (after one request)", 8.0),
        ),
        goal(
            "proxy RSS ≤ 12 MB at 1,000 rps",
            rss_with_private(report, S7, s7_case, 12.0),
        ),
        goal(
            "bulk mTLS throughput ≥ 60 % of direct",
            report
                .get(S4, "bulk, one stream", "throughput")
                .and_then(|r| r.ratio(Mode::Hostmesh, Mode::Direct))
                .map(|r| (format!("{:.0} %", r * 100.0), r >= 0.6)),
        ),
        goal(
            "new mTLS connections ≥ 2,000/s",
            value(
                report.get(S5, "8 concurrent clients", "connections"),
                Mode::Hostmesh,
            )
            .map(|v| (format!("{v:.0}/s"), v >= 2000.0)),
        ),
        goal(
            "≤ 24 KB per idle mTLS connection",
            per_idle.map(|(case, v)| (format!("{v:.1} KiB (host A's proxy, {case})"), v <= 24.0)),
        ),
    ];
    goals.push(goal(
        "better than HAProxy on every figure",
        versus_haproxy(report),
    ));
    goals
}

/// How many figures measured on both the mesh and HAProxy favour the mesh.
fn versus_haproxy(report: &Report) -> Option<(String, bool)> {
    let (mut better, mut total) = (0, 0);
    for row in &report.rows {
        // Not figures of the proxies: failures are listed apart, the server is the same.
        if row.metric == "errors" || row.metric == SERVER_CPU {
            continue;
        }
        let (Some(m), Some(h)) = (
            row.values.get(&Mode::Hostmesh),
            row.values.get(&Mode::Haproxy),
        ) else {
            continue;
        };
        total += 1;
        let wins = match row.better {
            Better::Lower => m <= h,
            Better::Higher => m >= h,
        };
        if wins {
            better += 1;
        }
    }
    (total > 0).then(|| (format!("{better} of {total} figures"), better == total))
}
