//! The control server's metrics in Prometheus' text exposition format (version 0.0.4),
//! served as `GET /metrics` on the status port. Values are read at scrape time from the
//! registry report and the ADS server, so nothing is counted twice and nothing goes stale.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hostmesh_control_source_healthy` | gauge (0/1) | `source` |
//! | `hostmesh_control_source_last_update_timestamp_seconds` | gauge | `source` |
//! | `hostmesh_control_source_services`, `_endpoints`, `_objects` | gauge | `source` |
//! | `hostmesh_control_source_rejected_objects` | gauge | `source` |
//! | `hostmesh_control_registry_conflicts` | gauge | |
//! | `hostmesh_control_registry_version` | gauge | |
//! | `hostmesh_control_ads_streams` | gauge | `mode` |
//! | `hostmesh_control_xds_pushes_total`, `hostmesh_control_xds_nacks_total` | counter | |
//!
//! Owns: the rendering. Must not touch: sources, the merge.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::AdsServer;
use super::status::Mode;
use crate::sources::health::RegistryReport;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub fn render(server: &AdsServer, report: Option<&RegistryReport>) -> String {
    let mut out = String::new();
    if let Some(report) = report {
        type Field = fn(&crate::sources::health::SourceStatus) -> Option<f64>;
        let per_source: [(&str, &str, Field); 6] = [
            (
                "hostmesh_control_source_healthy",
                "1 while the source reads its source of truth; its last good view stays in force otherwise.",
                |s| Some(f64::from(u8::from(s.healthy))),
            ),
            (
                "hostmesh_control_source_last_update_timestamp_seconds",
                "When the source's view last changed (Unix time).",
                |s| {
                    let at = humantime::parse_rfc3339(s.last_update.as_deref()?).ok()?;
                    Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
                },
            ),
            (
                "hostmesh_control_source_services",
                "Services in the source's view.",
                |s| Some(s.services as f64),
            ),
            (
                "hostmesh_control_source_endpoints",
                "Endpoints in the source's view.",
                |s| Some(s.endpoints as f64),
            ),
            (
                "hostmesh_control_source_objects",
                "Config objects in the source's view.",
                |s| Some(s.objects as f64),
            ),
            (
                "hostmesh_control_source_rejected_objects",
                "Objects the source rejected, each alone.",
                |s| Some(s.rejected as f64),
            ),
        ];
        for (name, help, value) in per_source {
            family(&mut out, name, "gauge", help);
            for s in &report.sources {
                if let Some(v) = value(s) {
                    let _ = writeln!(out, "{name}{{source=\"{}\"}} {v}", escape(&s.name));
                }
            }
        }
        family(
            &mut out,
            "hostmesh_control_registry_conflicts",
            "gauge",
            "Conflicts between sources in the snapshot in force.",
        );
        let _ = writeln!(
            out,
            "hostmesh_control_registry_conflicts {}",
            report.conflicts.len()
        );
        family(
            &mut out,
            "hostmesh_control_registry_version",
            "gauge",
            "Version of the merged snapshot in force.",
        );
        let _ = writeln!(out, "hostmesh_control_registry_version {}", report.version);
    }
    let streams = server.status();
    family(
        &mut out,
        "hostmesh_control_ads_streams",
        "gauge",
        "Connected ADS streams.",
    );
    for (mode, label) in [(Mode::Delta, "delta"), (Mode::StateOfTheWorld, "sotw")] {
        let n = streams.iter().filter(|s| s.mode == mode).count();
        let _ = writeln!(out, "hostmesh_control_ads_streams{{mode=\"{label}\"}} {n}");
    }
    let (pushes, nacks) = server.totals();
    family(
        &mut out,
        "hostmesh_control_xds_pushes_total",
        "counter",
        "xDS responses sent, over every stream.",
    );
    let _ = writeln!(out, "hostmesh_control_xds_pushes_total {pushes}");
    family(
        &mut out,
        "hostmesh_control_xds_nacks_total",
        "counter",
        "xDS responses refused by a client.",
    );
    let _ = writeln!(out, "hostmesh_control_xds_nacks_total {nacks}");
    family(
        &mut out,
        "hostmesh_control_xds_generation",
        "gauge",
        "Number of the xDS generation served.",
    );
    let _ = writeln!(
        out,
        "hostmesh_control_xds_generation {}",
        server.generation()
    );
    out
}
