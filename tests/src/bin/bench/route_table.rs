//! Scenario 8, the cost of a route table of 1,000 routes: the hostmesh path's latency when the
//! virtual host the requests hit has 1,000 routes (999 that do not match, the one that does
//! last) against one with a single route, at the same open-loop rate, in the same run.
//!
//! Two extra hosts in the registry, `bench-route-1` and `bench-route-1000` (resolution
//! `NONE`, so no cluster or endpoint of their own), each with a `VirtualService` whose last
//! route sends to `bench-server`. Both share route configuration `8080` with
//! `bench-server`; the client dials the same address and only its `Host` header picks the
//! table. The 999 non-matching routes alternate a `uri` prefix and a header match (the request
//! is `POST /` without the header), so each is looked at and refused. Both tables' matching
//! route carries the same policies (Istio's default retries), so the difference is the scan.

use std::fmt::Write as _;

use hostmesh_tests::bench::clients::{HttpTarget, Protocol};
use hostmesh_tests::bench::job::Job;
use hostmesh_tests::bench::openloop::{LoadReport, LoadSpec};

use crate::report::{Metric, Report};
use crate::scenarios::{RunArgs, Setup, load_rows};
use crate::topology::{HTTP1, Mode, SERVICE_HOST};

pub const S8: &str = "8. route table of 1,000 routes (HTTP/1.1 open loop)";
const ONE: &str = "bench-route-1.bench.svc.cluster.local";
const THOUSAND: &str = "bench-route-1000.bench.svc.cluster.local";
const ROUTES: usize = 1000;

/// The two route-table hosts and their `VirtualService`s.
pub fn registry_yaml() -> String {
    let mut yaml = String::new();
    for (name, host, routes) in [
        ("bench-route-1", ONE, 1),
        ("bench-route-1000", THOUSAND, ROUTES),
    ] {
        let _ = write!(
            yaml,
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: bench}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: NONE
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: bench}}
spec:
  hosts: [{host}]
  http:
",
            port = HTTP1.mesh,
        );
        let to = format!(
            "    route: [{{destination: {{host: {SERVICE_HOST}, port: {{number: {}}}}}}}]\n",
            HTTP1.mesh
        );
        for i in 0..routes - 1 {
            let matcher = if i % 2 == 0 {
                format!("{{uri: {{prefix: /tenant-{i}/}}}}")
            } else {
                format!("{{headers: {{x-tenant: {{exact: t{i}}}}}}}")
            };
            let _ = write!(yaml, "  - match: [{matcher}]\n{to}");
        }
        let _ = write!(yaml, "  - name: last\n{to}");
    }
    yaml
}

pub fn run(args: &RunArgs, setup: &Setup, report: &mut Report) {
    if !setup.modes.contains(&Mode::Hostmesh) {
        return report.error(format!("{S8}: needs the hostmesh path"));
    }
    let client = match setup.client() {
        Ok(c) => c,
        Err(e) => return report.error(format!("{S8}: {e:#}")),
    };
    let (rate, connections) = (args.route_table_rate, 16);
    let spec = LoadSpec {
        rate: Some(rate),
        connections,
        duration: args.duration(),
    };
    let load = |mode: Mode, authority: &str| -> anyhow::Result<LoadReport> {
        let target = HttpTarget {
            addr: mode.address(HTTP1),
            authority: authority.to_owned(),
            protocol: Protocol::Http1,
        };
        let (value, _) = client.run(&Job::Load { target, spec }, &[])?;
        Ok(serde_json::from_value(value)?)
    };
    let case = |routes: &str| format!("{rate} rps × {connections} conn, {routes}");
    let direct = if setup.modes.contains(&Mode::Direct) {
        eprintln!("bench:   {S8} via direct");
        load(Mode::Direct, SERVICE_HOST)
            .map_err(|e| report.error(format!("{S8} via direct: {e:#}")))
            .ok()
    } else {
        None
    };
    let mut p50 = Vec::new();
    for (routes, host) in [("1 route", ONE), ("1,000 routes", THOUSAND)] {
        eprintln!("bench:   {S8}, {routes}, via hostmesh");
        match load(Mode::Hostmesh, host) {
            Ok(l) => {
                load_rows(report, S8, &case(routes), Mode::Hostmesh, &l);
                if let Some(d) = &direct {
                    load_rows(report, S8, &case(routes), Mode::Direct, d);
                }
                p50.push((l.latency.p50_us, l.latency.p99_us));
            }
            Err(e) => report.error(format!("{S8}, {routes}: {e:#}")),
        }
    }
    if let [(p50_one, p99_one), (p50_many, p99_many)] = p50[..] {
        let ratio = case("1,000 routes ÷ 1 route");
        let rows = [
            (Metric::lower("p50 ratio", "×"), p50_many / p50_one),
            (Metric::lower("p99 ratio", "×"), p99_many / p99_one),
            (
                Metric::lower("p50 added by 999 more routes", "µs"),
                p50_many - p50_one,
            ),
        ];
        for (metric, value) in rows {
            report.set(S8, &ratio, metric, Mode::Hostmesh, value);
        }
    }
}
